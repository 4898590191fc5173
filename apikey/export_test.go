package apikey

// Lookup finds the key with hash h in s, for tests that know a hash but not its secret.
func Lookup(s *Set, h [32]byte) (Key, bool) {
	for _, k := range s.keys {
		if k.Hash == h {
			return k, true
		}
	}
	return Key{}, false
}
