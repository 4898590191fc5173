//go:build unix

package hub

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// openLocked opens the partial and takes an exclusive, non-blocking flock on it; the
// kernel drops the lock when the process dies, so a crash leaves no stale lock.
func openLocked(name string) (file, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errBusy
		}
		return nil, fmt.Errorf("locking %s: %w", name, err)
	}
	return f, nil
}

func freeSpace(dir string) (int64, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}

// release moves or removes the partial (op) and then closes it, so that the lock is
// held until the name is gone: a download waiting for the lock never takes over a file
// in the middle of its move.
func release(pf file, op func() error) (opErr, closeErr error) {
	opErr = op()
	return opErr, pf.Close()
}
