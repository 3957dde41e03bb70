package control

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestChecksumIsCachedByPathSizeAndMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugin")
	write := func(body string) string {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(body))
		return hex.EncodeToString(sum[:])
	}
	s := &Server{hashes: map[string]hashEntry{}}
	want := write("v1")
	if got := s.checksum(path); got != want {
		t.Fatalf("checksum %s, want %s", got, want)
	}
	// A cached entry is returned as long as size and mtime match: poison
	// it to prove the file is not read again.
	s.hashes[path] = hashEntry{mtime: s.hashes[path].mtime, size: s.hashes[path].size, sum: "cached"}
	if got := s.checksum(path); got != "cached" {
		t.Fatalf("checksum %s, want the cached value", got)
	}
	// A replaced binary (another size) is hashed again.
	want = write("version 2")
	if got := s.checksum(path); got != want {
		t.Fatalf("checksum after replace %s, want %s", got, want)
	}
	if got := s.checksum(filepath.Join(t.TempDir(), "missing")); got != "" {
		t.Fatalf("checksum of a missing file %q, want empty", got)
	}
}

func TestRSSOfThisProcess(t *testing.T) {
	if got := rss(os.Getpid()); got <= 0 {
		t.Fatalf("rss(self) = %d, want > 0", got)
	}
	if got := rss(1 << 30); got != 0 {
		t.Fatalf("rss(no such pid) = %d, want 0", got)
	}
}
