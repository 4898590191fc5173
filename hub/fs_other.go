//go:build !unix

package hub

import "os"

// openLocked opens the partial; without flock, two concurrent downloads of one file are
// not detected here (the checksum still catches a mixed-up result).
func openLocked(name string) (file, error) {
	return os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
}

func freeSpace(string) (int64, bool) { return 0, false }

// release closes the partial and then moves or removes it (op): where there is no lock,
// an open file cannot always be renamed.
func release(pf file, op func() error) (opErr, closeErr error) {
	closeErr = pf.Close()
	return op(), closeErr
}
