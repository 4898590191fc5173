package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"

	"github.com/specd-dev/specd/apikey"
	"github.com/specd-dev/specd/quota"
	"github.com/specd-dev/specd/services/auth"
)

// keyCmd manages API keys: `specd key new NAME` makes one.
func keyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "new" {
		return usagef("want `specd key new NAME [flags]`")
	}
	return keyNewCmd(args[1:], stdout, stderr)
}

// keyNewCmd makes a key: it prints the secret, once, and the line of the key file,
// which --append adds to a key file (refusing a name the file already has).
func keyNewCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("key new", flag.ContinueOnError)
	var lim quota.Limits
	var models, appendTo string
	fs.Float64Var(&lim.Rate, "rate", 0, "generated tokens per second the key may use (0: no limit)")
	fs.Float64Var(&lim.Burst, "burst", 0, "token bucket size: tokens the key may use at once after being idle (0: one second of --rate)")
	fs.IntVar(&lim.Streams, "streams", 0, "requests the key may have running at once (0: no limit)")
	fs.StringVar(&models, "models", "", "comma-separated models the key may use (empty: any)")
	fs.StringVar(&appendTo, "append", "", "append the key's line to this key file (the router's --api-keys), after checking the file")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: specd key new NAME [flags]\n\nPrints a new API key (once: only its hash is kept) and its line for the --api-keys file.")
		fs.PrintDefaults()
	}
	names, err := parseFlagsAndArgs(fs, args, stderr) // flags may come after the name
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usagef("want exactly one NAME, got %q", names)
	}
	var ms []string
	if models != "" {
		ms = splitList(models)
	}
	secret, k, err := apikey.New(names[0], lim, ms)
	if err != nil {
		return usagef("%v", err)
	}
	line := k.Line()
	if appendTo != "" {
		if err := appendKey(appendTo, line); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s\n", secret)
	if appendTo == "" {
		fmt.Fprintf(stdout, "%s\n", line)
		fmt.Fprintf(stderr, "specd key new: the first line is the key: give it to the client now, it is not stored anywhere;\nthe second line goes in the router's --api-keys file.\n")
	} else {
		fmt.Fprintf(stderr, "specd key new: the line above is the key: give it to the client now, it is not stored anywhere;\nits hash was appended to %s (the router reloads it by itself).\n", appendTo)
	}
	return nil
}

// appendKey adds line to the key file at path, creating it (mode 0600) if need be,
// once the file with the line added still parses — so a duplicate name or a broken
// file is refused rather than made worse. The file is replaced whole (replaceFile),
// never rewritten in place: the router rereads it every few seconds, and a file read
// between a truncation and the write would be empty — valid, and no key at all.
//
// Two appends to one file at once still race: both read the old file, and the
// second rename drops the first one's key. `specd key new` is an operator's command;
// run it once at a time per file.
func appendKey(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("--append: %w", err)
	}
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n")) {
		old = append(old, '\n')
	}
	next := append(old, line+"\n"...)
	if _, err := apikey.Parse(bytes.NewReader(next)); err != nil {
		return fmt.Errorf("--append %s: %w", path, err)
	}
	if err := replaceFile(path, next); err != nil {
		return fmt.Errorf("--append %s: %w", path, err)
	}
	return nil
}

// replaceFile atomically replaces the file at path with data, mode 0600: it writes a
// temporary file in the same directory, syncs it and renames it over path, so that a
// reader sees the old content or the new, never a part. On an error the temporary
// file is removed and path is left as it was.
func replaceFile(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename itself lasts once the directory is synced; where a directory
	// cannot be synced, the file is in place all the same.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// keyOptions are a router's --api-keys flag.
type keyOptions struct {
	path string
	keys *auth.Keys // loaded by validate; nil without --api-keys
}

func (o *keyOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.path, "api-keys", "", "file of API keys the public API demands (see specd key new), reloaded when it changes; empty: no authentication")
}

// validate loads the key file: a missing or malformed one stops the router from
// starting.
func (o *keyOptions) validate() error {
	if o.path == "" {
		return nil
	}
	k, err := auth.Load(o.path)
	if err != nil {
		return usagef("--api-keys: %v", err)
	}
	o.keys = k
	return nil
}

// keyCredentials sends the key in --api-key-file with every call; none without it.
func (o *clientOptions) keyCredentials() ([]grpc.DialOption, error) {
	if o.keyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(o.keyFile)
	if err != nil {
		return nil, usagef("--api-key-file: %v", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" || strings.ContainsAny(key, " \t\r\n") {
		return nil, usagef("--api-key-file %s: want the key alone on one line", o.keyFile)
	}
	return []grpc.DialOption{grpc.WithPerRPCCredentials(auth.Bearer(key))}, nil
}
