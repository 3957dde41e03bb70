package plugintest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Build is one `go build -o Out Pkgs...` that [MainWithBinaries] runs. Out
// is relative to the binaries directory; "" (or a name ending in "/") puts
// every package's binary in that directory under its own name.
type Build struct {
	Out   string
	Pkgs  []string
	Flags []string // extra `go build` flags, e.g. "-ldflags=-X main.version=v2"
}

// MainWithBinaries is the TestMain of an integration test that runs real
// binaries (the vigil host, plugins): it builds them once into a fresh
// temporary directory, stores that directory in *dir, runs the tests, and
// then fails the run if a goroutine leaked or a process started from the
// directory still runs. Binaries are built without -race: they are the
// system under test, not the test. It does not return.
func MainWithBinaries(m *testing.M, dir *string, builds ...Build) {
	code, err := mainWithBinaries(m, dir, builds)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func mainWithBinaries(m *testing.M, dir *string, builds []Build) (int, error) {
	d, err := os.MkdirTemp("", "vigil-bin-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(d)
	*dir = d
	for _, b := range builds {
		out := filepath.Join(d, b.Out)
		if b.Out == "" || strings.HasSuffix(b.Out, "/") {
			if err := os.MkdirAll(out, 0o755); err != nil {
				return 1, err
			}
			out += "/"
		}
		args := append(append([]string{"build", "-o", out}, b.Flags...), b.Pkgs...)
		if msg, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			return 1, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			return 1, fmt.Errorf("goroutine leak: %v", err)
		}
		// A process that was just killed may take a moment to be reaped.
		deadline := time.Now().Add(5 * time.Second)
		for pids := Procs(d); len(pids) > 0; pids = Procs(d) {
			if time.Now().After(deadline) {
				return 1, fmt.Errorf("processes left behind: %v", pids)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return code, nil
}

// Procs lists the live (not zombie) processes whose executable lies under
// dir. It reads /proc (Linux).
func Procs(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	prefix := filepath.Clean(dir) + "/"
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || !strings.HasPrefix(exe, prefix) {
			continue
		}
		if Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && !bytes.HasPrefix(stat[i+1:], []byte(" Z"))
}

// Eventually polls cond every 10 ms until it holds, or fails t after d.
// It is for waiting on outside state (processes, files, logs) that sends no
// event.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
