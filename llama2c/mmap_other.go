//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package llama2c

import (
	"io"
	"os"
)

// mmapFile reads the whole file where memory mapping is not implemented.
func mmapFile(f *os.File, size int) ([]byte, error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}

func munmap([]byte) error { return nil }
