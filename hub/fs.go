package hub

import (
	"io"
	"io/fs"
	"os"
)

// file is the partial file a download writes: an *os.File, or a test's stand-in.
type file interface {
	io.ReadWriteSeeker
	io.Closer
	Name() string
	Stat() (fs.FileInfo, error)
	Truncate(size int64) error
	Sync() error
}

// fsys is the file system a Client writes to. Tests replace parts of it to make a
// directory unwritable or a disk full, which no real directory is for root.
type fsys struct {
	mkdirAll func(dir string, perm fs.FileMode) error
	// open opens (creating) a partial file for reading and writing, locked against
	// another download of it (flock: another process, or another open file in this
	// one); it returns errBusy when that is running.
	open   func(name string) (file, error)
	rename func(from, to string) error
	// free reports the bytes available to this user in dir, when it can tell.
	free func(dir string) (int64, bool)
}

func osFS() fsys {
	return fsys{mkdirAll: os.MkdirAll, open: openLocked, rename: os.Rename, free: freeSpace}
}
