//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

// Package mmap maps model files read-only into memory, shared with the page cache, and
// falls back to reading them where mapping is not implemented.
package mmap

import (
	"os"
	"syscall"
)

// File maps size bytes of f read-only and shared: the pages come from the page cache
// and are never copied, and several processes serving the same model share them.
func File(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
}

// Unmap releases a mapping made by File.
func Unmap(b []byte) error { return syscall.Munmap(b) }
