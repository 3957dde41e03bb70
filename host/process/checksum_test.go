package process

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

func TestSumIsCachedUntilTheFileChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin")
	write := func(body string) []byte {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // a deploy: write, then rename
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(body))
		return sum[:]
	}
	want := write("v1")
	if got, err := Sum(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Sum = %x, %v; want %x", got, err, want)
	}
	// While the file is unchanged the cached sum is returned: poison the
	// cache entry to prove the file is not read again.
	sums.Lock()
	e := sums.m[path]
	sums.m[path] = sumEntry{id: e.id, sum: []byte("cached")}
	sums.Unlock()
	if got, _ := Sum(path); string(got) != "cached" {
		t.Fatalf("Sum of an unchanged file = %q, want the cached value", got)
	}
	// A replaced binary, even of the same size, is hashed again.
	want = write("v2")
	if got, err := Sum(path); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Sum after a replace = %x, %v; want %x", got, err, want)
	}
	if _, err := Sum(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("Sum of a missing file succeeded")
	}
}
