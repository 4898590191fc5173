#!/usr/bin/env bash
# proto.sh checks specd's protobuf API (proto/, buf.yaml, buf.gen.yaml):
#   1. buf lint and buf format are clean;
#   2. buf generate reproduces the committed Go code exactly (no diff, no new
#      or stale file under proto/);
#   3. the generated code builds against the main module's runtimes;
#   4. no breaking change against the previous commit, when it has protos.
#
# buf and the protoc plugins are built from the pinned tools modules
# (tools/go.mod, tools/plugins/go.mod) through `go tool`, so a fresh machine
# needs only Go and the module proxy. The first run builds buf (about three
# minutes on two cores); later runs reuse the Go build cache.
#
# Run from anywhere: bash .ci/proto.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# -modfile does not work in workspace mode; the tools modules stand alone.
export GOWORK=off

buf() { go tool -modfile=tools/go.mod buf "$@"; }

step() { printf '==> %s\n' "$*"; }

step "buf $(buf --version): lint"
buf lint

step "buf format"
buf format --diff --exit-code

step "buf generate"
# Build the plugins once, before buf runs them in parallel.
go tool -modfile=tools/plugins/go.mod protoc-gen-go --version
go tool -modfile=tools/plugins/go.mod protoc-gen-go-grpc --version
# Generated files are deleted first so that code for a removed .proto shows up
# as a deletion below instead of lingering.
find proto -type f -name '*.pb.go' -delete
buf generate

step "generated code matches the commit"
changes="$(git status --porcelain --untracked-files=all -- proto)"
if [[ -n "$changes" ]]; then
	printf '%s\n' "$changes"
	git --no-pager diff --stat -- proto
	echo "proto/ differs from the commit after buf generate: commit the .proto" \
		"files together with the code .ci/proto.sh generates from them." >&2
	exit 1
fi

step "go build ./proto/..."
go build ./proto/...

step "buf breaking"
# The previous commit is the baseline, once it has an API to break: a fresh
# clone in CI has the history; a shallow one or the first commit skips.
if git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null &&
	git cat-file -e 'HEAD~1:buf.yaml' 2>/dev/null &&
	git ls-tree -r --name-only 'HEAD~1' -- proto | grep -q '\.proto$'; then
	buf breaking --against '.git#ref=HEAD~1'
else
	echo "skipped: HEAD~1 is missing or has no buf.yaml and .proto files"
fi

step "proto: ok"
