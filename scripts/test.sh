#!/usr/bin/env bash
# The project's test command (README, CI): installs what is missing, then
# checks formatting, vets, runs every test with the race detector, gives
# each fuzz target a short run, and runs the standard filesystem suites
# (fsx, fsstress, pjdfstest) on a real mount with scripts/suites.sh when
# ../shared/suites is there. DHDFS_SUITES=skip leaves the suites out;
# scripts/suites.sh runs only them (--help for its options).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
command -v go >/dev/null 2>&1 || { echo "test.sh: Go is not installed (https://go.dev/dl/)" >&2; exit 1; }

# What the tests run: the mount tests need /dev/fuse and, when not root,
# fusermount3; the tool tests drive rsync and getfattr/setfattr, the crash
# tests sqlite3.
need=()
for tool in fusermount3:fuse3 rsync:rsync getfattr:attr sqlite3:sqlite3; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "== installing ${need[*]}"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

start=$SECONDS
# step NAME COMMAND...: runs one step under its header and prints its wall time
step() {
	local name=$1 t=$SECONDS
	shift
	echo "== $name"
	"$@"
	echo "-- $name: $((SECONDS - t)) s"
}

check_gofmt() {
	local files unformatted
	files=$(git ls-files '*.go' 2>/dev/null) || files=$(find . -name '*.go')
	unformatted=$(printf '%s\n' "$files" | xargs -r -d '\n' gofmt -l)
	if [ -n "$unformatted" ]; then
		echo "gofmt would change:"; echo "$unformatted"; return 1
	fi
}

# Budgets are counts of executions, about 10 s each here, not durations:
# Go 1.26's fuzz coordinator can fail a target with "context deadline
# exceeded" when a -fuzztime duration ends while a worker is mid-input
# (go.dev/issue/75804, fixed in Go 1.27), which it did in CI.
fuzz() {
	go test -run='^$' -fuzz=FuzzDecoders -fuzztime=100000x ./cluster/
	go test -run='^$' -fuzz=FuzzServer -fuzztime=25000x ./cluster/control/
	go test -run='^$' -fuzz=FuzzOpenDamagedMeta -fuzztime=400x ./cluster/
}

step gofmt check_gofmt
if command -v shellcheck >/dev/null 2>&1; then
	step "shellcheck (warnings)" shellcheck -S warning scripts/*.sh .ci/run
fi
step "go vet" go vet ./...
step "README quick start" scripts/quickstart.sh --check
step "go test -race" go test -race -count=1 -timeout 15m ./...
step "fuzz (short)" fuzz
if [ "${DHDFS_SUITES:-}" = skip ]; then
	echo "== suites: skipped (DHDFS_SUITES=skip)"
else
	scripts/suites.sh # its own headers and times; one line when ../shared/suites is missing
fi
echo "== all passed ($((SECONDS - start)) s)"
