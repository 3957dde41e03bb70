package process

import (
	"crypto/sha256"
	"io"
	"os"
	"sync"
	"syscall"
)

// Sum returns the SHA-256 of the file at path. Results are cached by the
// file's identity (device, inode, size and change time: any write, rename
// or chmod changes one of them, and the change time cannot be set by
// hand), so an unchanged binary is hashed once however often it is
// restarted or shown by `vigil status`. Safe for concurrent use.
func Sum(path string) ([]byte, error) {
	id, err := statID(path)
	if err != nil {
		return nil, err
	}
	sums.Lock()
	e, ok := sums.m[path]
	sums.Unlock()
	if ok && e.id == id {
		return e.sum, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	sum := h.Sum(nil)
	sums.Lock()
	sums.m[path] = sumEntry{id: id, sum: sum}
	sums.Unlock()
	return sum, nil
}

var sums = struct {
	sync.Mutex
	m map[string]sumEntry
}{m: map[string]sumEntry{}}

type sumEntry struct {
	id  fileID
	sum []byte
}

// fileID identifies a file's content without reading it.
type fileID struct {
	dev, ino            uint64
	size                int64
	ctimeSec, ctimeNsec int64
}

func statID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, ctimeSec: st.Ctim.Sec, ctimeNsec: st.Ctim.Nsec}, nil
}
