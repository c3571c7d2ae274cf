#!/usr/bin/env bash
# scripts/suites.sh — the standard filesystem suites on a real dhdfs mount
# (run by scripts/test.sh after the Go tests; runnable on its own to iterate).
#
# Builds fsx, fsstress and pjdfstest from ../shared/suites (its build.sh, into
# a cache keyed by the sources), builds dhdfs, and for each suite creates a
# fresh pool (home + 3 drive directories, replicas 2) in a scratch directory,
# mounts it and runs:
#   fsx        9 runs of -N 20000: seeds 1 2 3 × (default, -W -R), then
#              -c 20 (seed 1), -f (seed 2), -Z (seed 3); then one long run of
#              -N 100000 with a rotating seed (printed; --seed to replay)
#   fsstress   -p 4 -n 2000 with the rotating seed; no process may print an
#              error and no operation may fail with EIO
#   pjdfstest  on a mount with --allow-other, as root: prove -j2 -r over its
#              tests from a fresh directory inside the mount; 0 failures
# Each suite ends with `dhdfs umount` and `dhdfs fsck` on the unmounted pool,
# which must report it clean. Every step prints its wall time; a failure
# prints the log tails that matter and the command that replays it. The
# mount is always unmounted and its process ended, also on Ctrl-C.
#
# Without ../shared/suites (a plain clone) it prints one line and succeeds.
# Exit status: 0 when every selected suite passed, 1 otherwise, 2 for usage.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
repo=$(pwd -P)

usage() {
	cat <<'EOF'
usage: scripts/suites.sh [options]
  --only LIST        run only these suites, comma-separated (repeatable):
                     fsx (the 9 runs and the long one), fsx-long (only the
                     long one), fsstress, pjdfstest          [all]
  --seed N           seed of the long fsx run and of fsstress  [rotating]
  --fsx-ops N        operations per fsx run                     [20000]
  --fsx-long-ops N   operations of the long fsx run (0: none)   [100000]
  --fsstress-ops N   operations per fsstress process            [2000]
  --pjdfstest LIST   only these pjdfstest tests, comma-separated, relative
                     to its tests/ (e.g. rename,chmod/00.t)     [all]
  --jobs N           pjdfstest test files run at once (prove -j) [2]
  --suites DIR       suite sources                    [../shared/suites]
  --cache DIR        where the built suites are kept
                     [${XDG_CACHE_HOME:-~/.cache}/dhdfs-suites]
  --dhdfs BIN        use this dhdfs binary instead of building one
  --keep             keep the scratch directory (pools, logs) also on success
  -h, --help         this help
Environment: DHDFS_SUITES_SEED, DHDFS_FSX_OPS, DHDFS_PJDFSTEST_JOBS set the
same defaults. Needs root for pjdfstest (it switches uids) and, when
something is missing, to install fuse3, perl (prove) and openssl.
EOF
}

# ---------------------------------------------------------------- options
only=()
seed=${DHDFS_SUITES_SEED:-}
fsx_ops=${DHDFS_FSX_OPS:-20000}
fsx_long_ops=100000
fsstress_ops=2000
pj_tests=""
jobs=${DHDFS_PJDFSTEST_JOBS:-2}
src=../shared/suites
cache=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dhdfs-suites
dhdfs_bin=""
keep=0
need_arg() { [ $# -ge 2 ] || { echo "suites.sh: $1 needs a value" >&2; usage >&2; exit 2; }; }
while [ $# -gt 0 ]; do
	case $1 in
	--only) need_arg "$@"; IFS=, read -ra more <<<"$2"; only+=("${more[@]}"); shift 2 ;;
	--seed) need_arg "$@"; seed=$2; shift 2 ;;
	--fsx-ops) need_arg "$@"; fsx_ops=$2; shift 2 ;;
	--fsx-long-ops) need_arg "$@"; fsx_long_ops=$2; shift 2 ;;
	--fsstress-ops) need_arg "$@"; fsstress_ops=$2; shift 2 ;;
	--pjdfstest) need_arg "$@"; pj_tests=$2; shift 2 ;;
	--jobs) need_arg "$@"; jobs=$2; shift 2 ;;
	--suites) need_arg "$@"; src=$2; shift 2 ;;
	--cache) need_arg "$@"; cache=$2; shift 2 ;;
	--dhdfs) need_arg "$@"; dhdfs_bin=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) echo "suites.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
	esac
done
for n in "$fsx_ops" "$fsx_long_ops" "$fsstress_ops" "$jobs" ${seed:+"$seed"}; do
	case $n in '' | *[!0-9]*) echo "suites.sh: not a number: '$n'" >&2; exit 2 ;; esac
done
[ ${#only[@]} -gt 0 ] || only=(fsx fsstress pjdfstest)
run_fsx=0 run_fsx_long=0 run_fsstress=0 run_pjdfstest=0
for s in "${only[@]}"; do
	case $s in
	fsx) run_fsx=1; run_fsx_long=1 ;;
	fsx-long) run_fsx_long=1 ;;
	fsstress) run_fsstress=1 ;;
	pjdfstest) run_pjdfstest=1 ;;
	*) echo "suites.sh: unknown suite '$s' (fsx, fsx-long, fsstress, pjdfstest)" >&2; exit 2 ;;
	esac
done
[ "$fsx_long_ops" -gt 0 ] || run_fsx_long=0
# The rotating seed: printed with every run that uses it, --seed replays it.
[ -n "$seed" ] || seed=$((RANDOM * 32768 + RANDOM + 1))

if [ ! -f "$src/build.sh" ]; then
	echo "== suites: skipped: no $src/build.sh (CI provides ../shared/suites beside the clone)"
	exit 0
fi
src=$(cd "$src" && pwd -P)

# ---------------------------------------------------------------- helpers
now() { echo "${EPOCHREALTIME:-$(date +%s.%N)}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
times=() # "step|seconds|result" for the summary
record() { times+=("$1|$2|$3"); }
indent() { sed 's/^/    | /'; }
tail_of() { # FILE N TITLE: the last N lines of FILE, indented
	if [ -s "$1" ]; then
		echo "  -- $3 (last $2 lines of $1):"
		tail -n "$2" "$1" | cut -c1-400 | indent
	fi
}

# install_missing CMD:PACKAGE...: apt-get installs the packages whose command is missing
install_missing() {
	local want=() pair
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || want+=("${pair#*:}")
	done
	[ ${#want[@]} -gt 0 ] || return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "== installing ${want[*]}"
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
	else
		echo "suites.sh: missing packages: ${want[*]} (install them, or run as root on Debian)" >&2
		exit 1
	fi
}

# ---------------------------------------------------------------- mounts
# One pool at a time: its directory, home, mount point and mount process.
pool="" home="" mnt="" mount_pid=""

# dh ARGS...: dhdfs on the current pool (its home in DHDFS_HOME)
dh() { DHDFS_HOME=$home "$dhdfs" "$@"; }

mounted() { # is $mnt in the mount table (also when its daemon died and stat fails)?
	[ -n "$mnt" ] && awk -v m="$mnt" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# pool_up NAME [mount options...]: a fresh pool in $work/NAME, mounted at $work/NAME/mnt
pool_up() {
	local name=$1
	shift
	pool=$work/$name home=$work/$name/home mnt=$work/$name/mnt
	mkdir -p "$mnt" "$pool/d1" "$pool/d2" "$pool/d3"
	(
		dh init &&
			dh node add "$pool/d1" &&
			dh node add "$pool/d2" &&
			dh node add "$pool/d3"
	) >"$pool/setup.log" 2>&1 || {
		echo "  FAILED: could not create the pool"
		tail_of "$pool/setup.log" 20 "setup"
		return 1
	}
	# in the foreground it logs to stderr
	DHDFS_HOME=$home "$dhdfs" mount "$@" "$mnt" >"$pool/mount.log" 2>&1 3>&- 4>&- &
	mount_pid=$!
	for _ in $(seq 1 300); do
		mountpoint -q "$mnt" && break
		kill -0 "$mount_pid" 2>/dev/null || break
		sleep 0.1
	done
	if ! mountpoint -q "$mnt"; then
		echo "  FAILED: the mount did not come up"
		tail_of "$pool/mount.log" 30 "mount log"
		cleanup_mount
		return 1
	fi
	echo "  mounted a new pool at $mnt (dhdfs mount${*:+ $*}, pid $mount_pid, log $pool/mount.log)"
}

# alive: the mount still serves; otherwise says so with the mount log
alive() {
	if mountpoint -q "$mnt" && kill -0 "$mount_pid" 2>/dev/null; then return 0; fi
	echo "  FAILED: the mount is gone (process $mount_pid $(kill -0 "$mount_pid" 2>/dev/null && echo alive || echo exited))"
	tail_of "$pool/mount.log" 40 "mount log"
	return 1
}

# pool_down: dhdfs umount (which waits for the mount process), then dhdfs fsck
# on the unmounted pool; both must succeed.
pool_down() {
	local t rc=0 st=0
	t=$(now)
	if ! timeout 180 env DHDFS_HOME="$home" "$dhdfs" umount "$mnt" >"$pool/umount.log" 2>&1; then
		echo "  FAILED: dhdfs umount $mnt"
		tail_of "$pool/umount.log" 10 "umount"
		tail_of "$pool/mount.log" 30 "mount log"
		cleanup_mount
		return 1
	fi
	wait "$mount_pid" || st=$?
	mount_pid=""
	if [ "$st" != 0 ]; then
		echo "  FAILED: the mount process exited with status $st"
		tail_of "$pool/mount.log" 30 "mount log"
		rc=1
	fi
	if mounted; then
		echo "  FAILED: $mnt is still mounted after dhdfs umount"
		cleanup_mount
		return 1
	fi
	echo "  unmounted ($(since "$t"))"
	t=$(now)
	if dh fsck >"$pool/fsck.log" 2>&1; then
		echo "  fsck: $(grep -m1 '^Checked' "$pool/fsck.log" || tail -n 1 "$pool/fsck.log") ($(since "$t"))"
	else
		echo "  FAILED: dhdfs fsck (exit $?, $(since "$t")):"
		grep -v '^fsck: [0-9]*/[0-9]* done' "$pool/fsck.log" | head -n 60 | cut -c1-400 | indent
		echo "    (full output: $pool/fsck.log; the pool is kept in $pool)"
		rc=1
	fi
	return "$rc"
}

# cleanup_mount: never leave a mount or its process behind, whatever state they are in
cleanup_mount() {
	if [ -n "$mnt" ] && mounted; then
		timeout 60 env DHDFS_HOME="$home" "$dhdfs" umount "$mnt" >/dev/null 2>&1 || true
	fi
	if [ -n "$mount_pid" ] && kill -0 "$mount_pid" 2>/dev/null; then
		kill -TERM "$mount_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$mount_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$mount_pid" 2>/dev/null || true
	fi
	if [ -n "$mnt" ] && mounted; then
		fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
	fi
	[ -z "$mount_pid" ] || wait "$mount_pid" 2>/dev/null || true
	mount_pid=""
}

# run_in DIR SECONDS COMMAND...: runs COMMAND in DIR with a time limit (exit
# 124 when reached), in the background so that a signal to this script ends
# it at once (the EXIT trap stops it) instead of after it
child=""
run_in() {
	local dir=$1 limit=$2 rc=0
	shift 2
	(cd "$dir" && exec timeout "$limit" "$@" 3>&- 4>&-) &
	child=$!
	wait "$child" || rc=$?
	child=""
	return "$rc"
}

failed=0
on_exit() { # STATUS
	local rc=$1
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null || true # timeout passes it on
		wait "$child" 2>/dev/null || true
	fi
	cleanup_mount
	if [ -n "${work:-}" ] && [ -d "$work" ]; then
		if [ "$keep" = 0 ] && [ "$failed" = 0 ] && [ "$rc" = 0 ]; then
			rm -rf "$work"
		else
			echo "== suites: pools and logs kept in $work"
		fi
	fi
}
# A signal can come while a command's output goes to a log file: the traps
# write to the script's own output, kept as fds 3 and 4.
exec 3>&1 4>&2
trap 'on_exit $? >&3 2>&4' EXIT
trap 'exec >&3 2>&4; echo "suites.sh: interrupted"; exit 130' INT
trap 'exec >&3 2>&4; echo "suites.sh: terminated"; exit 143' TERM

# ---------------------------------------------------------------- setup
total_t=$(now)
install_missing mountpoint:util-linux fusermount3:fuse3 prove:perl openssl:openssl
[ -e /dev/fuse ] || { echo "suites.sh: no /dev/fuse" >&2; exit 1; }
if [ "$run_pjdfstest" = 1 ] && [ "$(id -u)" != 0 ]; then
	echo "suites.sh: pjdfstest needs root (it switches uids); run as root, or --only fsx,fsstress" >&2
	exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/dhdfs-suites-run.XXXXXX")
work=$(cd "$work" && pwd -P)

echo "== suites: build fsx, fsstress, pjdfstest ($src/build.sh)"
t=$(now)
# Cached per content of the sources: built into a fresh directory, then renamed.
key=$(cd "$src" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
dest=$cache/$key
if [ -x "$dest/bin/fsx" ] && [ -x "$dest/bin/fsstress" ] && [ -x "$dest/pjdfstest/pjdfstest" ]; then
	touch "$dest" # in use: kept by the clean-up below
	echo "  cached in $dest ($(since "$t"))"
else
	rm -rf "$dest" # incomplete
	mkdir -p "$cache"
	# builds of other sources, unused for a week
	find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -mtime +7 -exec rm -rf {} + 2>/dev/null || true
	tmp=$(mktemp -d "$cache/build.XXXXXX")
	if ! "$src/build.sh" "$tmp" >"$work/build-suites.log" 2>&1; then
		echo "  FAILED: $src/build.sh"
		tail_of "$work/build-suites.log" 30 "build log"
		rm -rf "$tmp"
		exit 1
	fi
	mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp" # another run built it first
	echo "  built into $dest ($(since "$t"))"
fi
record "build suites" "$(since "$t")" ok
fsx=$dest/bin/fsx fsstress=$dest/bin/fsstress pjdir=$dest/pjdfstest

echo "== suites: build dhdfs"
t=$(now)
if [ -n "$dhdfs_bin" ]; then
	dhdfs=$(cd "$(dirname "$dhdfs_bin")" && pwd -P)/$(basename "$dhdfs_bin")
	[ -x "$dhdfs" ] || { echo "suites.sh: $dhdfs_bin is not executable" >&2; exit 1; }
	echo "  using $dhdfs"
else
	if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="$PATH:/usr/local/go/bin"; fi
	dhdfs=$work/dhdfs
	go build -o "$dhdfs" ./cmd/dhdfs
	echo "  $dhdfs ($(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown), $(since "$t"))"
fi
record "build dhdfs" "$(since "$t")" ok
echo "  rotating seed: $seed (replay: scripts/suites.sh --seed $seed ...)"

# ---------------------------------------------------------------- fsx
# fsx_run LABEL OPS SEED [options...]: one fsx run on a new file in the mount
fsx_passed=0 fsx_total=0
fsx_run() {
	local label=$1 ops=$2 s=$3 t rc=0 name log
	shift 3
	fsx_total=$((fsx_total + 1))
	name=fsx-$fsx_total
	log=$work/fsx/$name.out
	t=$(now)
	run_in "$work" 1800 "$fsx" -q -N "$ops" -S "$s" "$@" -P "$work/fsx" "$mnt/$name" >"$log" 2>&1 || rc=$?
	if [ "$rc" = 0 ]; then
		fsx_passed=$((fsx_passed + 1))
		printf '  %-34s ok (%s)\n' "$label" "$(since "$t")"
		rm -f "$work/fsx/$name".fsx* # the file stays in the pool, for fsck
		return 0
	fi
	printf '  %-34s FAILED (exit %s%s, %s)\n' "$label" "$rc" "$([ "$rc" = 124 ] && echo ': timed out')" "$(since "$t")"
	echo "    command: fsx -N $ops -S $s${*:+ $*} FILE   (seed $s, on a fresh mount)"
	# fsx says what went wrong, then dumps the operations, the failing one last
	echo "  -- fsx's error ($log):"
	sed '/^LOG DUMP/q' "$log" | head -n 40 | cut -c1-300 | indent
	tail_of "$log" 30 "fsx's operations, the failing one last"
	if [ -f "$work/fsx/$name.fsxops" ]; then
		echo "    replay: fsx --replay-ops=$work/fsx/$name.fsxops${*:+ $*} FILE"
	fi
	# a mount that died is reported by alive
	if kill -0 "$mount_pid" 2>/dev/null; then tail_of "$pool/mount.log" 20 "mount log"; fi
	return 1
}

suite_fsx() {
	local s failed_here=0
	mkdir -p "$work/fsx"
	pool_up fsx || return 1
	if [ "$run_fsx" = 1 ]; then
		for s in 1 2 3; do
			fsx_run "-S $s" "$fsx_ops" "$s" || failed_here=1
			alive || { cleanup_mount; return 1; }
			fsx_run "-S $s -W -R" "$fsx_ops" "$s" -W -R || failed_here=1
			alive || { cleanup_mount; return 1; }
		done
		fsx_run "-S 1 -c 20" "$fsx_ops" 1 -c 20 || failed_here=1
		alive || { cleanup_mount; return 1; }
		fsx_run "-S 2 -f" "$fsx_ops" 2 -f || failed_here=1
		alive || { cleanup_mount; return 1; }
		fsx_run "-S 3 -Z" "$fsx_ops" 3 -Z || failed_here=1
		alive || { cleanup_mount; return 1; }
		echo "  fsx: $fsx_passed of $fsx_total runs of $fsx_ops operations passed"
	fi
	if [ "$run_fsx_long" = 1 ]; then
		fsx_run "long: -N $fsx_long_ops -S $seed" "$fsx_long_ops" "$seed" || failed_here=1
		alive || { cleanup_mount; return 1; }
	fi
	pool_down || failed_here=1
	return "$failed_here"
}

# ---------------------------------------------------------------- fsstress
suite_fsstress() {
	local t rc=0 failed_here=0 out=$work/fsstress.out err=$work/fsstress.err eio
	pool_up fsstress || return 1
	mkdir -p "$mnt/fsstress"
	t=$(now)
	echo "  fsstress -p 4 -n $fsstress_ops -s $seed (seed $seed)"
	run_in "$work" 1800 "$fsstress" -v -p 4 -n "$fsstress_ops" -d "$mnt/fsstress" -s "$seed" >"$out" 2>"$err" || rc=$?
	# fsstress exits 0 even when a process aborts: what it prints on stderr counts.
	# With -v each operation is a line ending with its errno; EIO (5) means the
	# filesystem failed, not the operation's arguments.
	eio=$(awk '$NF == 5' "$out" | wc -l)
	if [ "$rc" = 0 ] && [ ! -s "$err" ] && [ "$eio" = 0 ]; then
		echo "  fsstress: ok, $(wc -l <"$out") operations logged ($(since "$t"))"
	else
		echo "  FAILED: fsstress (exit $rc$([ "$rc" = 124 ] && echo ': timed out'), $(wc -l <"$err") lines on stderr, $eio operations with EIO, $(since "$t"))"
		echo "    command: fsstress -p 4 -n $fsstress_ops -d DIR -s $seed   (on a fresh mount)"
		tail_of "$err" 20 "fsstress stderr"
		[ "$eio" = 0 ] || { echo "  -- operations that got EIO:"; awk '$NF == 5' "$out" | head -n 20 | indent; }
		tail_of "$out" 20 "fsstress operations"
		tail_of "$pool/mount.log" 30 "mount log"
		failed_here=1
	fi
	alive || { cleanup_mount; return 1; }
	pool_down || failed_here=1
	return "$failed_here"
}

# ---------------------------------------------------------------- pjdfstest
# pj_report LOG: counts, then the failing cases by directory and by file, of
# a prove -v log (with -j too: prove prints each file's lines together)
pj_report() {
	# names of pjdfstest's NAME_MAX and PATH_MAX cases shortened
	sed -E 's/([0-9a-f]{12})[0-9a-fx]{40,}/\1.../g' "$1" | awk -v logf="$1" '
	# a file starts with its path and dots; "not ok" without TODO is a failure
	/^\/.*\.t \.+ ?$/ { f = $1; sub(/.*\/tests\//, "", f); if (!(f in seen)) { seen[f] = 1; nfiles++ }; next }
	f != "" && /^ok / { cases++; next }
	f != "" && /^not ok / {
		cases++
		if ($0 ~ /# TODO/) next
		if (!(f in bad)) { order[++nbad] = f }
		bad[f]++; nfail++
		if (bad[f] <= 2) { nex[f]++; ex[f, nex[f]] = substr($0, 1, 240) }
	}
	/^Test Summary Report/ { f = ""; insum = 1; next }
	# files prove counts as failed without a "not ok" (bad plan, exit status)
	# (a file listed only for "TODO passed" cases, Wstat 0 and Failed 0, passed)
	insum && /^\/.*\.t +\(Wstat: 0 Tests: [0-9]+ Failed: 0\)/ { g = ""; next }
	insum && /^\/.*\.t +\(Wstat:/ {
		g = $1; sub(/.*\/tests\//, "", g)
		line = $0; sub(/^[^(]*/, "", line)
		summ[g] = line
		if (!(g in bad)) { order[++nbad] = g; bad[g] = 0 }
	}
	insum && g != "" && /Parse errors:/ { p = $0; sub(/^ */, "", p); nex[g]++; ex[g, nex[g]] = p }
	/^Files=/ { filesline = $0 }
	# each line is printed as "KEY<tab>TEXT": sorted on KEY, then KEY is cut
	END {
		printf "0\t  pjdfstest: %d of %d cases failed, in %d of %d test files\n", nfail, cases, nbad, nfiles
		if (filesline != "") printf "0\t  prove: %s\n", filesline
		if (nbad == 0) exit
		printf "1\t  failed cases by directory:\n"
		printf "3\t  failed files (the first failing cases of each; all of them in %s):\n", logf
		for (i = 1; i <= nbad; i++) {
			g = order[i]; d = g; sub(/\/[^\/]*$/, "", d)
			dn[d] += bad[g]; df[d]++
			printf "4 %s 0\t    tests/%-18s %4d failed  %s\n", g, g, bad[g], summ[g]
			for (j = 1; j <= nex[g]; j++) printf "4 %s %d\t        %s\n", g, j, ex[g, j]
		}
		for (d in dn) printf "2 %s\t    tests/%-12s %5d cases in %2d files\n", d, d, dn[d], df[d]
	}' | sort -t "$(printf '\t')" -k1,1 -s | cut -f2-
}

suite_pjdfstest() {
	local t rc=0 failed_here=0 log=$work/pjdfstest.log targets=() x
	if [ -n "$pj_tests" ]; then
		IFS=, read -ra targets <<<"$pj_tests"
		for x in "${!targets[@]}"; do
			targets[x]=$pjdir/tests/${targets[x]}
			[ -e "${targets[x]}" ] || { echo "  FAILED: no pjdfstest test ${targets[x]}"; return 1; }
		done
	else
		targets=("$pjdir/tests")
	fi
	pool_up pjdfstest --allow-other || return 1
	mkdir -p "$mnt/pjdfstest"
	t=$(now)
	echo "  cd MNT/pjdfstest && prove -j$jobs -r -v ${targets[*]}"
	run_in "$mnt/pjdfstest" 3600 prove -j"$jobs" -r -v "${targets[@]}" >"$log" 2>&1 || rc=$?
	pj_report "$log"
	if [ "$rc" = 0 ] && grep -q '^Result: PASS' "$log"; then
		echo "  pjdfstest: ok ($(since "$t"))"
	else
		echo "  FAILED: pjdfstest (prove exit $rc$([ "$rc" = 124 ] && echo ': timed out'), $(since "$t"))"
		echo "    one file again: cd MNT/dir && prove -v $pjdir/tests/DIR/NN.t, or scripts/suites.sh --only pjdfstest --pjdfstest DIR/NN.t"
		grep -q '^Result:' "$log" || tail_of "$log" 20 "prove output"
		tail_of "$pool/mount.log" 20 "mount log"
		failed_here=1
	fi
	alive || { cleanup_mount; return 1; }
	pool_down || failed_here=1
	return "$failed_here"
}

# ---------------------------------------------------------------- run
# step NAME TITLE: runs suite_NAME, records its time and result
step() {
	local t
	echo "== suites: $2"
	t=$(now)
	if "suite_$1"; then
		echo "  -- $1: ok ($(since "$t"))"
		record "$1" "$(since "$t")" ok
	else
		echo "  -- $1: FAILED ($(since "$t"))"
		record "$1" "$(since "$t")" FAILED
		failed=1
	fi
}
if [ "$run_fsx" = 1 ] && [ "$run_fsx_long" = 1 ]; then
	step fsx "fsx (9 runs of $fsx_ops operations, one of $fsx_long_ops with seed $seed), then umount and fsck"
elif [ "$run_fsx" = 1 ]; then
	step fsx "fsx (9 runs of $fsx_ops operations), then umount and fsck"
elif [ "$run_fsx_long" = 1 ]; then
	step fsx "fsx (one run of $fsx_long_ops operations with seed $seed), then umount and fsck"
fi
if [ "$run_fsstress" = 1 ]; then
	step fsstress "fsstress (-p 4 -n $fsstress_ops -s $seed), then umount and fsck"
fi
if [ "$run_pjdfstest" = 1 ]; then
	step pjdfstest "pjdfstest (--allow-other mount, prove -j$jobs), then umount and fsck"
fi

echo "== suites: summary (wall time; the machine may be shared, so times vary)"
for row in "${times[@]}"; do
	IFS='|' read -r name secs result <<<"$row"
	printf '  %-14s %10s  %s\n' "$name" "$secs" "$result"
done
printf '  %-14s %10s\n' total "$(since "$total_t")"
if [ "$failed" != 0 ]; then
	echo "== suites: FAILED (rotating seed $seed)"
	exit 1
fi
echo "== suites: all passed"
