#!/usr/bin/env bash
# Side-by-side benchmark: the same workloads, in one run, against
#   raw       a plain directory on the same disk,
#   loopback  a go-fuse loopback of a plain directory without passthrough
#             (the cost of FUSE alone; dhdfs's reference),
#   mergerfs  over 3 directories, when installed,
#   dhdfs     a pool of 3 drives in the scratch directory, replicas 2,
# and prints one table with dhdfs's ratios to raw and to loopback, and the
# dhdfs process's peak anonymous memory and CPU time. Every file written
# holds unique random data, so deduplication cannot flatter dhdfs.
#
#   scripts/bench.sh [--quick] [--size 1GiB] [--rounds 3] [--dir SCRATCH] [--scale]
#
# --quick   256 MiB, fewer files, shorter random reads (about a minute)
# --rounds  how many times the cold and random reads run, interleaved
#           across the targets; the table shows medians
# --scale   also: peak memory copying 4 GiB into 4 and 8 drives, mount
#           time and ls -l with 100,000 files (several minutes)
# Run as root: it drops the page cache and mounts without fusermount3.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

size=1GiB quick=0 scale=0 scratch=${TMPDIR:-/tmp} rounds_arg=
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1; size=256MiB ;;
	--size) size=$2; shift ;;
	--dir) scratch=$2; shift ;;
	--scale) scale=1 ;;
	--rounds) rounds_arg=$2; shift ;;
	*) echo "usage: scripts/bench.sh [--quick] [--size 1GiB] [--rounds 3] [--dir SCRATCH] [--scale]" >&2; exit 2 ;;
	esac
	shift
done
case "$size" in
*GiB) mib=$(( ${size%GiB} * 1024 )) ;;
*MiB) mib=${size%MiB} ;;
*) echo "bench.sh: --size takes MiB or GiB, e.g. 512MiB" >&2; exit 2 ;;
esac
nfiles=5000 ndirs=1000 fiotime=10 rounds=3
[ "$quick" = 1 ] && nfiles=1000 ndirs=300 fiotime=4
if [ -n "$rounds_arg" ]; then
	case "$rounds_arg" in ''|*[!0-9]*|0) echo "bench.sh: --rounds takes a whole number from 1" >&2; exit 2 ;; esac
	rounds=$rounds_arg
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	missing=""
	command -v fio >/dev/null 2>&1 || missing="$missing fio"
	command -v mergerfs >/dev/null 2>&1 || missing="$missing mergerfs"
	command -v fusermount3 >/dev/null 2>&1 || missing="$missing fuse3"
	if [ -n "$missing" ]; then
		echo "== installing$missing"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) || echo "   (install failed; continuing without)"
	fi
fi

work=$(mktemp -d "$scratch/dhdfs-bench.XXXXXX")
mounts=()
pids=()
cleanup() {
	[ -n "${pipemax:-}" ] && echo "$pipemax" >/proc/sys/fs/pipe-max-size 2>/dev/null
	for m in "${mounts[@]}"; do
		grep -q " $m " /proc/mounts && { fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"; }
	done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# The dhdfs mount writes to home and the drives until it has exited.
	for _ in $(seq 300); do [ -n "${dpid:-}" ] && kill -0 "$dpid" 2>/dev/null || break; sleep 0.1; done
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building"
mkdir -p "$work/bin"
go build -o "$work/bin/dhdfs" ./cmd/dhdfs
go build -o "$work/bin/loopback" ./scripts/loopback
go build -o "$work/bin/benchfiles" ./scripts/benchfiles
dhdfs() { "$work/bin/dhdfs" "$@"; }

drop_caches() { sync; [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches || true; }
now() { date +%s.%N; }
# median of the numbers given ("-" for none).
median() { [ $# -gt 0 ] || { echo -; return; }; printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# bdi is the sysfs file of a FUSE mount's read-ahead in KiB.
bdi() { echo "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb"; }

wait_mounted() {
	for _ in $(seq 100); do grep -q " $1 " /proc/mounts && return 0; sleep 0.05; done
	echo "bench.sh: $1 did not mount" >&2; exit 1
}

echo "== setting up in $work"
mkdir -p "$work/raw" "$work/loopsrc" "$work/loop" "$work/mnt" "$work/merger" "$work/m1" "$work/m2" "$work/m3"
# The loopback logs every reply it cannot splice; keep that out of the table.
"$work/bin/loopback" "$work/loopsrc" "$work/loop" 2>"$work/loopback.log" & pids+=($!); mounts+=("$work/loop")
wait_mounted "$work/loop"
targets="raw loop"
if command -v mergerfs >/dev/null 2>&1; then
	mergerfs -o cache.files=partial,dropcacheonclose=true,category.create=mfs "$work/m1:$work/m2:$work/m3" "$work/merger" && mounts+=("$work/merger") && targets="$targets merger"
fi
export DHDFS_HOME="$work/home"
dhdfs init >/dev/null
for i in 1 2 3; do mkdir "$work/d$i"; dhdfs node add "$work/d$i" >/dev/null 2>&1; done
dhdfs mount --daemon "$work/mnt"
mounts+=("$work/mnt")
targets="$targets mnt"
dpid=$(cat "$work/home/lock")

# Peak RssAnon of the dhdfs process, sampled in the background.
peakfile="$work/peak"
echo 0 >"$peakfile"
( peak=0; while kill -0 "$dpid" 2>/dev/null; do
	a=$(awk '/RssAnon/ {print $2}' "/proc/$dpid/status" 2>/dev/null || echo 0)
	[ -n "$a" ] && [ "$a" -gt "$peak" ] && peak=$a && echo "$peak" >"$peakfile"
	sleep 0.1
done ) & pids+=($!)

head -c $((256 << 20)) /dev/urandom >"$work/rand.src"

declare -A R S
for t in $targets; do
	cp "$work/rand.src" "$work/$t/rand"; sync "$work/$t/rand"
done
rm -f "$work/rand.src"

# Every workload runs in rounds: this machine's disk and CPU vary by a
# factor of two within minutes, so each round runs everything on every
# target in turn (the order reversed every other round), and the table
# shows each target's median. Each round writes fresh random data. dhdfs
# raises its mount's read-ahead (mount --read-ahead); one more cold read of
# the loopback with its read-ahead raised to match shows what that alone
# gives a plain FUSE filesystem (the loopback then needs pipes of its
# replies' size to keep splicing them).
loop_ra=$(bdi "$work/loop") ra_ok=0
[ -w "$loop_ra" ] && ra_ok=1
pipemax=$(cat /proc/sys/fs/pipe-max-size)
add() { S[$1,$2]="${S[$1,$2]:-} $3"; }
lsl() { ls -l "$1" >/dev/null; }
copy() { cp "$1" "$2" && sync "$2"; }
timed_rate() { local n=$1 a b; shift; a=$(now); "$@"; b=$(now); rate "$n" "$a" "$b"; }
order=$targets
for round in $(seq "$rounds"); do
	echo "== round $round of $rounds"
	head -c "$((mib << 20))" /dev/urandom >"$work/src.bin"
	head -c "$((mib << 20))" /dev/urandom >"$work/src2.bin"
	for t in $order; do
		d="$work/$t"
		drop_caches
		add "$t" write "$(timed_rate "$mib" dd if="$work/src.bin" of="$d/seq" bs=1M conv=fsync status=none)"
		add "$t" cp "$(timed_rate "$mib" copy "$work/src2.bin" "$d/cp")"
		rm -f "$d/cp"
		drop_caches
		add "$t" read "$(timed_rate "$mib" dd if="$d/seq" of=/dev/null bs=1M status=none)"
		if [ "$t" = loop ] && [ "$ra_ok" = 1 ]; then
			old=$(cat "$loop_ra")
			[ "$pipemax" -lt $((2 << 20)) ] && echo $((2 << 20)) >/proc/sys/fs/pipe-max-size
			cat "$(bdi "$work/mnt")" >"$loop_ra"
			drop_caches
			add "$t" readra "$(timed_rate "$mib" dd if="$d/seq" of=/dev/null bs=1M status=none)"
			echo "$old" >"$loop_ra"
			echo "$pipemax" >/proc/sys/fs/pipe-max-size
		fi
		rm -f "$d/seq"
		drop_caches
		add "$t" rand "$(fio --name=rand --filename="$d/rand" --size=256M --rw=randread --bs=4k --ioengine=psync \
			--runtime="$fiotime" --time_based --invalidate=1 --output-format=terse 2>/dev/null | awk -F';' '{print $8}')"
		mkdir "$d/small" "$d/dirs"
		add "$t" create "$("$work/bin/benchfiles" -n "$nfiles" create "$d/small")"
		drop_caches
		add "$t" ls "$(timed_rate "$nfiles" lsl "$d/small")"
		drop_caches
		add "$t" readsmall "$("$work/bin/benchfiles" -n "$nfiles" read "$d/small")"
		add "$t" delete "$("$work/bin/benchfiles" -n "$nfiles" delete "$d/small")"
		add "$t" mkdir "$("$work/bin/benchfiles" -n "$ndirs" mkdir "$d/dirs")"
		rm -rf "$d/dirs" "$d/small"
	done
	order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
done
rm -f "$work/src.bin" "$work/src2.bin"
for t in $targets; do
	for k in write cp read readra rand create ls readsmall delete mkdir; do R[$t,$k]=$(median ${S[$t,$k]:-}); done
	rm -f "$work/$t/rand"
done
R[mnt,readra]=${R[mnt,read]}

cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$dpid/stat")
peak=$(( $(cat "$peakfile") / 1024 ))

echo
echo "dhdfs $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), size $size, 3 drives, replicas 2"
ra="kernel read-ahead: dhdfs $(cat "$(bdi "$work/mnt")") KiB, loopback $(cat "$(bdi "$work/loop")") KiB"
case " $targets " in *" merger "*) ra="$ra, mergerfs $(cat "$(bdi "$work/merger")") KiB" ;; esac
echo "$ra"
echo "each figure: the median of $rounds rounds"
name() { case $1 in raw) echo raw ;; loop) echo loopback ;; merger) echo mergerfs ;; mnt) echo dhdfs ;; esac; }
{
	printf "workload"
	for t in $targets; do printf "\t%s" "$(name "$t")"; done
	printf "\tdhdfs/raw\tdhdfs/loopback\n"
	for w in "write:seq write MiB/s (fsync)" "cp:cp MiB/s" "read:seq read MiB/s (cold)" \
		"readra:  same, loopback at dhdfs's read-ahead" "rand:4k random read IOPS" \
		"create:create files/s" "ls:ls -l files/s" "readsmall:read files/s" "delete:delete files/s" "mkdir:mkdir dirs/s"; do
		k=${w%%:*}
		printf "%s" "${w#*:}"
		for t in $targets; do printf "\t%s" "${R[$t,$k]}"; done
		awk -v d="${R[mnt,$k]}" -v r="${R[raw,$k]}" -v l="${R[loop,$k]}" 'function ratio(a, b) { return b + 0 > 0 ? sprintf("%.2f", a / b) : "-" }
			BEGIN { printf "\t%s\t%s\n", ratio(d, r), ratio(d, l) }'
	done
} | column -t -s $'\t'
echo "dhdfs process: peak RssAnon $peak MiB, CPU $cpu s"

if [ "$scale" = 1 ]; then
	echo
	echo "== scale: peak memory copying 4 GiB into pools of 4 and 8 drives"
	dhdfs umount "$work/mnt"
	head -c $((4 << 30)) /dev/urandom >"$work/big.bin"
	for n in 4 8; do
		h="$work/home$n"
		DHDFS_HOME=$h dhdfs init >/dev/null
		for i in $(seq "$n"); do mkdir -p "$work/s$n-$i"; DHDFS_HOME=$h dhdfs node add "$work/s$n-$i" >/dev/null 2>&1; done
		DHDFS_HOME=$h dhdfs mount --daemon "$work/mnt"
		p=$(cat "$h/lock"); peak=0
		cp "$work/big.bin" "$work/mnt/big" &
		cpid=$!
		while kill -0 "$cpid" 2>/dev/null; do
			a=$(awk '/RssAnon/ {print $2}' "/proc/$p/status"); [ "$a" -gt "$peak" ] && peak=$a; sleep 0.1
		done
		wait "$cpid"
		echo "$n drives: peak RssAnon $((peak / 1024)) MiB while copying 4 GiB"
		DHDFS_HOME=$h dhdfs umount "$work/mnt"
		rm -rf "$h" "$work"/s$n-*
	done
	rm -f "$work/big.bin"
	echo "== scale: 100,000 files"
	dhdfs mount --daemon "$work/mnt"
	"$work/bin/benchfiles" -n 100000 -size 16 create "$work/mnt/" >/dev/null
	dhdfs umount "$work/mnt"
	a=$(now); dhdfs mount --daemon "$work/mnt"; b=$(now)
	echo "mount ready in $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b - a }') s with 100,000 files"
	a=$(now); ls -l "$work/mnt" | wc -l >/dev/null; b=$(now)
	echo "ls -l of a directory of 100,000 entries: $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b - a }') s"
	dhdfs umount "$work/mnt"
fi
