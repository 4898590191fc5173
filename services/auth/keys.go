// Package auth guards specd's public gRPC API with API keys: it keeps the key file
// (package apikey) loaded and reloads it when it changes, and its interceptors
// authenticate each request's `authorization: Bearer <key>` metadata, check the key's
// model list and apply its quotas (package quota), putting the key's name — never the
// key — on the request's span, logs and metrics. Health and reflection stay open.
//
// It knows nothing of the router's routing: it reads a request only for its model
// name (and a ListModels response, to list only the key's models). The tokens a
// request generates are billed by whoever commits them, through the charge the guard
// puts in the request's context (services.WithCharge).
package auth

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/specd-dev/specd/apikey"
)

// maxFileBytes bounds a key file (10,000 keys of a few options each fit).
const maxFileBytes = 8 << 20

// Keys is the key file's current content. Reload reads the file again when its
// modification time or size has changed and then stayed the same until the next
// call; a file that cannot be read or parsed leaves the keys in force as they were.
// Safe for concurrent use.
type Keys struct {
	path string
	set  atomic.Pointer[apikey.Set]

	mu    sync.Mutex // serializes Reload
	stamp stamp      // of the file last loaded
	seen  stamp      // of the file at the last call
}

// stamp is what Reload compares to notice a change.
type stamp struct {
	mod  time.Time
	size int64
}

// Load reads the key file at path. An unreadable or malformed file is an error: a
// router must not start with keys other than the operator's.
func Load(path string) (*Keys, error) {
	k := &Keys{path: path}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	if err := k.load(st); err != nil {
		return nil, err
	}
	return k, nil
}

// Set is the keys in force.
func (k *Keys) Set() *apikey.Set { return k.set.Load() }

// Reload reads the file again if it changed since it was last loaded and has not
// changed since the previous call, and reports whether it did. A file written in
// place is empty or half-written for a moment: were it read then, a prefix of the
// new keys, or none, would be put in force. On an error the keys in force stay, and
// the file is tried again on the next call even if it has not changed since.
func (k *Keys) Reload() (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, err := os.Stat(k.path)
	if err != nil {
		k.seen = stamp{}
		return false, fmt.Errorf("api keys: %w", err)
	}
	now := stamp{st.ModTime(), st.Size()}
	settled := now == k.seen
	k.seen = now
	if now == k.stamp || !settled {
		return false, nil
	}
	if err := k.load(st); err != nil {
		return false, err
	}
	return true, nil
}

// load parses the file (whose stat is st) and puts it in force.
func (k *Keys) load(st os.FileInfo) error {
	if st.Size() > maxFileBytes {
		return fmt.Errorf("api keys %s: %d bytes, more than %d", k.path, st.Size(), maxFileBytes)
	}
	b, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	set, err := apikey.Parse(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", k.path, err)
	}
	k.set.Store(set)
	k.stamp = stamp{st.ModTime(), st.Size()}
	return nil
}

// Watch calls Reload every interval until ctx ends, logging each reload and each
// failure (a failure once until the error changes, so that a broken file does not
// fill the log).
func (k *Keys) Watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := k.Reload()
		switch {
		case err != nil:
			if err.Error() != last {
				log.Error("api key file not reloaded; the keys loaded before stay in force", "path", k.path, "err", err)
			}
			last = err.Error()
		case changed:
			log.Info("api key file reloaded", "path", k.path, "keys", k.Set().Len())
			last = ""
		}
	}
}
