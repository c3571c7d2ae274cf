#!/usr/bin/env bash
# The seed's scenario, step by step: a pool of 4 drives with 2 replicas,
# a file written, the drive holding its first chunk taken offline, and the
# file read back identical. Everything lives in a temp dir removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

work=$(mktemp -d /tmp/dhdfs-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
export DHDFS_HOME="$work/home"
go build -o "$work/dhdfs" ./cmd/dhdfs
dhdfs() { "$work/dhdfs" "$@"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step dhdfs init --chunk-size 64KiB
for i in 1 2 3 4; do
	mkdir "$work/disk$i"
	step dhdfs node add --name "d$i" "$work/disk$i"
done
head -c 300000 /dev/urandom > "$work/notes.bin"
step dhdfs mkdir /docs
step dhdfs put "$work/notes.bin" /docs/notes.bin
step dhdfs stat --chunks /docs/notes.bin

first=$(dhdfs stat --json --chunks /docs/notes.bin | sed -n 's/^ *"drives": \[ *"\([^"]*\)".*/\1/p; /"drives": \[$/{n;s/^ *"\([^"]*\)".*/\1/p}' | head -1)
echo; echo "The first chunk's first copy is on $first: unplug it."
step dhdfs node offline "$first"
step dhdfs node list
step dhdfs get /docs/notes.bin "$work/copy.bin"
step cmp "$work/notes.bin" "$work/copy.bin"
echo "identical: the file survived the loss of drive $first"
step dhdfs status
