#!/usr/bin/env bash
# The project's test command (README, CI): installs what is missing, then
# checks formatting, vets, runs every test with the race detector, and gives
# each fuzz target a short run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "test.sh: Go is not installed (https://go.dev/dl/)" >&2; exit 1; }

# FUSE: the mount tests need /dev/fuse and, when not root, fusermount3.
if ! command -v fusermount3 >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "== installing fuse3"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 15m ./...

echo "== fuzz (short)"
go test -run='^$' -fuzz=FuzzDecoders -fuzztime=10s ./cluster/
go test -run='^$' -fuzz=FuzzServer -fuzztime=10s ./cluster/control/
