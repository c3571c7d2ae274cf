#!/usr/bin/env bash
# The README's Quick start, run for real: a pool of three drives in a temp
# dir (shown as /tmp/qs), every command of the transcript, and its output.
#
#   scripts/quickstart.sh           print the transcript (paste it into the README)
#   scripts/quickstart.sh --check   compare it with the README's Quick start
#
# --check fails when a command's output no longer matches the README's
# sample: lines added, removed or reworded, columns changed. What differs
# from run to run is masked on both sides first: ids, dates, sizes,
# device numbers, owners, which drives hold a chunk (and so which drive goes
# offline, and how many chunks that leaves under-replicated), and column
# widths.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi
check=0
case "${1:-}" in
--check) check=1 ;;
"") ;;
*) echo "usage: scripts/quickstart.sh [--check]" >&2; exit 2 ;;
esac

# In /tmp/qs itself when it is free, so that columns line up as printed.
if mkdir /tmp/qs 2>/dev/null; then work=/tmp/qs; else work=$(mktemp -d /tmp/dhdfs-quickstart.XXXXXX); fi
trap 'rm -rf "$work"' EXIT
go build -o "$work/bin/dhdfs" ./cmd/dhdfs
export PATH="$work/bin:$PATH" DHDFS_HOME="$work/home"
mkdir "$work/disk1" "$work/disk2" "$work/disk3"
head -c 3000000 /dev/urandom >"$work/report.pdf"

transcript() {
	cd "$work"
	# run CMD...: the command as typed, then what it printed (stderr too).
	run() {
		echo "\$ $*"
		"$@" 2>&1
	}
	run dhdfs init
	run dhdfs node add "$work/disk1"
	run dhdfs node add --name d2 --label enclosure=A "$work/disk2"
	run dhdfs node add "$work/disk3"
	run dhdfs node list
	run dhdfs mkdir /docs
	run dhdfs put report.pdf /docs/
	run dhdfs ls -l /docs
	run dhdfs stat --chunks /docs/report.pdf
	# A drive holding a copy of the first chunk, so that the pool degrades.
	local d
	d=$(dhdfs stat --chunks /docs/report.pdf | awk '$1 == "0" {split($5, a, ","); print a[1]}')
	run dhdfs node offline "$d"
	run dhdfs get /docs/report.pdf copy.pdf
	run dhdfs status
	echo '$ cmp report.pdf copy.pdf && echo identical'
	cmp report.pdf copy.pdf && echo identical
}
out=$(transcript | sed "s#$work#/tmp/qs#g")

if [ "$check" = 0 ]; then
	printf '%s\n' "$out"
	exit 0
fi

# mask: what differs between runs and machines.
mask() {
	sed -E \
		-e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}Z?/DATE/g' \
		-e 's/\b[0-9a-f]{8,}\b/ID/g' \
		-e 's/[0-9]+(\.[0-9]+)? [KMGT]?i?B\b/SIZE/g' \
		-e 's/\b[0-9]+:[0-9]+\b/DEV/g' \
		-e '/^[0-9]+ +ID /s/d[0-9](,d[0-9])*/DRIVES/' \
		-e 's/(node offline |Drive )d[0-9]/\1DRIVE/' \
		-e 's/^(At risk: +[^:]*:).*/\1 DRIVES/' \
		-e 's/^([-dlpsc][-rwxsStT]{9} +[0-9]+ +)[^ ]+ +[^ ]+/\1OWNER GROUP/' \
		-e 's/(Uid|Gid): [0-9]+/\1: ID/g' \
		-e 's/[0-9]+ of them on online/N of them on online/' \
		-e 's/degraded: [0-9]+ chunks?/degraded: N chunks/; s/[0-9]+ under-replicated/N under-replicated/' \
		-e 's/ +/ /g' -e 's/ +$//'
}
readme=$(awk '/^## Quick start/ {q=1} q && /^```$/ {n++; if (n == 2) exit; next} q && n == 1' README.md)
if [ -z "$readme" ]; then
	echo "quickstart: no Quick start transcript in README.md" >&2
	exit 1
fi
if ! diff <(printf '%s\n' "$readme" | mask) <(printf '%s\n' "$out" | mask) >"$work/diff"; then
	echo "quickstart: README.md's Quick start differs from what the commands print now (< README, > now, masked):"
	cat "$work/diff"
	echo "Regenerate it with scripts/quickstart.sh."
	exit 1
fi
echo "quickstart: README.md's Quick start matches the commands' output"
