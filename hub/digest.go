package hub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
)

// Algo is how a file's digest is computed.
type Algo int

const (
	// SHA256 is the SHA-256 of the content: the object id of a file stored in Git LFS,
	// as every model file on the Hub is.
	SHA256 Algo = iota + 1
	// GitSHA1 is git's blob id, SHA-1("blob <size>\x00" + content): the only digest the
	// Hub gives for a small file kept in git itself.
	GitSHA1
)

func (a Algo) String() string {
	switch a {
	case SHA256:
		return "sha256"
	case GitSHA1:
		return "git-sha1"
	}
	return "algo(" + strconv.Itoa(int(a)) + ")"
}

// Digest is the expected hash of a file.
type Digest struct {
	Algo Algo
	Hex  string // lower-case
}

func (d Digest) String() string { return d.Algo.String() + ":" + d.Hex }

// ParseDigest checks a hex digest of the algorithm and returns it in lower case.
func ParseDigest(a Algo, s string) (Digest, error) {
	n := 0
	switch a {
	case SHA256:
		n = sha256.Size
	case GitSHA1:
		n = sha1.Size
	default:
		return Digest{}, fmt.Errorf("unknown digest algorithm %v", a)
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		return Digest{}, fmt.Errorf("bad %v digest %q", a, printable(s, 80))
	}
	return Digest{Algo: a, Hex: hex.EncodeToString(b)}, nil
}

// newHash returns a hash that, fed the size bytes of the content, sums to the digest.
func (d Digest) newHash(size int64) hash.Hash {
	if d.Algo == GitSHA1 {
		h := sha1.New()
		fmt.Fprintf(h, "blob %d\x00", size)
		return h
	}
	return sha256.New()
}
