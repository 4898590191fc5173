package mmap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// residentKB returns the Rss of the mapping that starts at b[0], from /proc/self/smaps.
func residentKB(t *testing.T, b []byte) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&b[0])))
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		// A mapping's header starts with its address range; its fields end in a colon.
		if f := strings.Fields(line); len(f) > 0 && !strings.HasSuffix(f[0], ":") {
			in = strings.HasPrefix(f[0], start)
			continue
		}
		var kb int
		if in && strings.HasPrefix(line, "Rss:") {
			if _, err := fmt.Sscanf(line, "Rss: %d kB", &kb); err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no mapping at %s in /proc/self/smaps", start)
	return 0
}

var sink byte

func TestReleaseDropsPagesKeepsBytes(t *testing.T) {
	page := os.Getpagesize()
	want := make([]byte, 64*page)
	for i := range want {
		want[i] = byte(i*7 + i/page)
	}
	path := filepath.Join(t.TempDir(), "weights")
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	m, err := File(fh, len(want))
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(m)
	for i := 0; i < len(m); i += page {
		sink += m[i] // fault every page in
	}
	full := residentKB(t, m)
	if full < len(m)/1024 {
		t.Fatalf("Rss %d kB after touching all %d kB", full, len(m)/1024)
	}
	// Pages 8..39 whole, plus half pages at both ends, which must stay.
	part := m[8*page-page/2 : 40*page+page/2]
	if err := Release(m, part); err != nil {
		t.Fatal(err)
	}
	if got, want := residentKB(t, m), full-32*page/1024; got != want {
		t.Errorf("Rss after releasing 32 pages = %d kB, want %d", got, want)
	}
	if !bytes.Equal(m, want) {
		t.Error("the released pages read back different bytes")
	}
}

func TestReleaseLeavesOtherMemoryAlone(t *testing.T) {
	page := os.Getpagesize()
	path := filepath.Join(t.TempDir(), "weights")
	if err := os.WriteFile(path, make([]byte, 4*page), 0o600); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	m, err := File(fh, 4*page)
	if err != nil {
		t.Fatal(err)
	}
	defer Unmap(m)
	// A copy on the heap: madvise(MADV_DONTNEED) would zero it.
	heap := make([]byte, 16*page)
	for i := range heap {
		heap[i] = 0xA5
	}
	for _, b := range [][]byte{heap, heap[page:], nil} {
		if err := Release(m, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := Release(nil, heap); err != nil {
		t.Fatal(err)
	}
	for i, c := range heap {
		if c != 0xA5 {
			t.Fatalf("heap byte %d is %#x after Release: memory outside the mapping was dropped", i, c)
		}
	}
}
