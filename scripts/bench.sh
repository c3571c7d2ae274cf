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
# Besides sequential, random and small-file I/O it measures small synchronous
# writes (fio 4 KiB random writes with an fsync at the end, 200-byte appends
# each followed by fsync, SQLite commits with a rollback journal and with a
# WAL), a cp -a of Go's source tree, the CPU time each filesystem's process
# spends per GiB written and read, and how many bytes each writes to its
# disk per byte the application wrote (from /proc/PID/io).
#
#   scripts/bench.sh [--quick] [--size 1GiB] [--rounds 3] [--dir SCRATCH] [--scale] [--base REV]
#
# --quick   256 MiB, fewer files and commits, part of Go's src, shorter fio
#           runs, 1 round (a few minutes)
# --rounds  how many times every workload runs, interleaved across the
#           targets; the table shows medians
# --scale   also: peak memory copying 4 GiB into 4 and 8 drives, mount
#           time and ls -l with 100,000 files (several minutes)
# --base    also: dhdfs built from git revision REV, a pool of its own on
#           the same disk, as one more target in the same rounds (before
#           and after a change, side by side), with a dhdfs/base column
# Run as root: it drops the page cache and mounts without fusermount3.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

size=1GiB quick=0 scale=0 scratch=${TMPDIR:-/tmp} rounds_arg= base=
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1; size=256MiB ;;
	--size) size=$2; shift ;;
	--dir) scratch=$2; shift ;;
	--scale) scale=1 ;;
	--rounds) rounds_arg=$2; shift ;;
	--base) base=$2; shift ;;
	*) echo "usage: scripts/bench.sh [--quick] [--size 1GiB] [--rounds 3] [--dir SCRATCH] [--scale] [--base REV]" >&2; exit 2 ;;
	esac
	shift
done
case "$size" in
*GiB) mib=$(( ${size%GiB} * 1024 )) ;;
*MiB) mib=${size%MiB} ;;
*) echo "bench.sh: --size takes MiB or GiB, e.g. 512MiB" >&2; exit 2 ;;
esac
# nsync: appends and SQLite commits per run; settle: at most this many
# seconds waiting for dhdfs to finish writing after the random writes.
nfiles=5000 ndirs=1000 fiotime=10 rounds=3 nsync=300 settle_max=60
[ "$quick" = 1 ] && nfiles=1000 ndirs=300 fiotime=4 rounds=1 nsync=100 settle_max=20
if [ -n "$base" ]; then
	base_rev=$(git rev-parse --short "$base^{commit}" 2>/dev/null) || { echo "bench.sh: --base $base: not a git revision here" >&2; exit 2; }
fi
if [ -n "$rounds_arg" ]; then
	case "$rounds_arg" in ''|*[!0-9]*|0) echo "bench.sh: --rounds takes a whole number from 1" >&2; exit 2 ;; esac
	rounds=$rounds_arg
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	missing=""
	command -v fio >/dev/null 2>&1 || missing="$missing fio"
	command -v mergerfs >/dev/null 2>&1 || missing="$missing mergerfs"
	command -v fusermount3 >/dev/null 2>&1 || missing="$missing fuse3"
	command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
	if [ -n "$missing" ]; then
		echo "== installing$missing"
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) || echo "   (install failed; continuing without)"
	fi
fi
have() { command -v "$1" >/dev/null 2>&1; }

work=$(mktemp -d "$scratch/dhdfs-bench.XXXXXX")
mounts=()
pids=()
cleanup() {
	[ -n "${pipemax:-}" ] && echo "$pipemax" >/proc/sys/fs/pipe-max-size 2>/dev/null
	for m in "${mounts[@]}"; do
		grep -q " $m " /proc/mounts && { fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m"; }
	done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	# The dhdfs mounts write to home and the drives until they have exited.
	for p in ${dpid:-} ${bpid:-}; do
		for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building"
mkdir -p "$work/bin"
go build -o "$work/bin/dhdfs" ./cmd/dhdfs
go build -o "$work/bin/loopback" ./scripts/loopback
go build -o "$work/bin/benchfiles" ./scripts/benchfiles
if [ -n "$base" ]; then
	mkdir "$work/basesrc"
	git archive "$base_rev" | tar -x -C "$work/basesrc"
	(cd "$work/basesrc" && go build -o "$work/bin/dhdfs-base" ./cmd/dhdfs)
	rm -rf "$work/basesrc"
fi
dhdfs() { "$work/bin/dhdfs" "$@"; }

drop_caches() { sync; [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches || true; }
now() { date +%s.%N; }
# median of the numbers given ("-" for none).
median() { [ $# -gt 0 ] || { echo -; return; }; printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
hz=$(getconf CLK_TCK)
# per_gib TICKS MIB: CPU seconds per GiB.
per_gib() { awk -v t="$1" -v hz="$hz" -v m="$2" 'BEGIN { printf "%.2f", t / hz / (m / 1024) }'; }
# per_byte WRITTEN APP: bytes written to disk per byte the application wrote.
per_byte() { awk -v w="$1" -v a="$2" 'BEGIN { if (a > 0) printf "%.2f", w / a; else print "-" }'; }

# Each target's filesystem process (none for raw), for its CPU time and the
# bytes it sent to storage.
declare -A daemon
# probe T: P_TICKS, the CPU time (clock ticks) of T's process so far, and
# P_WB, the bytes it has sent to storage (/proc/PID/io write_bytes: pages it
# dirtied, whether written with write() or through a shared mapping). For
# raw, the same of this shell's waited-for children: the workload itself.
# Builtins only, so probing forks nothing that would count.
probe() {
	local pid=${daemon[$1]:-} line st k v self=0
	[ -n "$pid" ] || { pid=$BASHPID self=1; }
	read -r line <"/proc/$pid/stat"
	read -r -a st <<<"${line##*) }"
	# st[0] is field 3 (state): utime 14, stime 15, cutime 16, cstime 17.
	if [ "$self" = 1 ]; then P_TICKS=$(( st[13] + st[14] )); else P_TICKS=$(( st[11] + st[12] )); fi
	P_WB=0
	while read -r k v; do if [ "$k" = write_bytes: ]; then P_WB=$v; fi; done <"/proc/$pid/io"
}
# measure T N CMD...: runs CMD on target T and sets M_RATE (N per second of
# it), M_CPU and M_WB (T's CPU ticks and bytes written during it) and
# M_WB0 (T's bytes written before it).
measure() {
	local t=$1 n=$2 a b c0; shift 2
	probe "$t"; c0=$P_TICKS M_WB0=$P_WB
	a=$EPOCHREALTIME
	"$@"
	b=$EPOCHREALTIME
	probe "$t"
	M_CPU=$(( P_TICKS - c0 )) M_WB=$(( P_WB - M_WB0 ))
	M_RATE=$(rate "$n" "$a" "$b")
}
# settle PID QUIET MAX: waits until PID has written nothing for QUIET
# seconds, or MAX seconds have passed; sets SETTLED to the seconds waited.
settle() {
	local pid=$1 quiet=$2 max=$3 last=-1 same=0 i=0 wb k v
	while [ "$i" -lt $(( max * 2 )) ]; do
		wb=0
		while read -r k v; do if [ "$k" = write_bytes: ]; then wb=$v; fi; done <"/proc/$pid/io"
		if [ "$wb" = "$last" ]; then
			same=$(( same + 1 ))
			[ "$same" -ge $(( quiet * 2 )) ] && break
		else
			same=0 last=$wb
		fi
		sleep 0.5
		i=$(( i + 1 ))
	done
	SETTLED=$(( i / 2 ))
}

# bdi is the sysfs file of a FUSE mount's read-ahead in KiB.
bdi() { echo "/sys/class/bdi/$(mountpoint -d "$1")/read_ahead_kb"; }

wait_mounted() {
	for _ in $(seq 100); do grep -q " $1 " /proc/mounts && return 0; sleep 0.05; done
	echo "bench.sh: $1 did not mount" >&2; exit 1
}

echo "== setting up in $work"
mkdir -p "$work/raw" "$work/loopsrc" "$work/loop" "$work/loopra" "$work/mnt" "$work/merger" "$work/m1" "$work/m2" "$work/m3"
# The loopback logs every reply it cannot splice; keep that out of the table.
"$work/bin/loopback" "$work/loopsrc" "$work/loop" 2>"$work/loopback.log" & pids+=($!); mounts+=("$work/loop")
daemon[loop]=$!
wait_mounted "$work/loop"
targets="raw loop"
if have mergerfs; then
	# In the foreground (in the background of this script) to know its PID.
	mergerfs -f -o cache.files=partial,dropcacheonclose=true,category.create=mfs "$work/m1:$work/m2:$work/m3" "$work/merger" 2>"$work/mergerfs.log" &
	daemon[merger]=$! pids+=($!) mounts+=("$work/merger")
	if wait_mounted "$work/merger" 2>/dev/null; then targets="$targets merger"; else echo "   (mergerfs did not mount; continuing without)"; unset 'daemon[merger]'; fi
fi
export DHDFS_HOME="$work/home"
dhdfs init >/dev/null
for i in 1 2 3; do mkdir "$work/d$i"; dhdfs node add "$work/d$i" >/dev/null 2>&1; done
dhdfs mount --daemon "$work/mnt"
mounts+=("$work/mnt")
targets="$targets mnt"
# mount_pid HOME BINARY: the PID of the mount of the pool in HOME. The lock
# file's first line is the mount's PID; check it runs BINARY, else look for
# the process that does.
mount_pid() {
	local p=$(head -n 1 "$1/lock")
	if [ "$(readlink "/proc/$p/exe" 2>/dev/null)" != "$2" ]; then
		p=
		for q in /proc/[0-9]*; do [ "$(readlink "$q/exe" 2>/dev/null)" = "$2" ] && p=${q#/proc/}; done
		[ -n "$p" ] || { echo "bench.sh: cannot find the mount's process of $2" >&2; exit 1; }
	fi
	echo "$p"
}
dpid=$(mount_pid "$work/home" "$work/bin/dhdfs")
daemon[mnt]=$dpid
if [ -n "$base" ]; then
	mkdir -p "$work/base"
	( export DHDFS_HOME="$work/home-base"
	  "$work/bin/dhdfs-base" init >/dev/null
	  for i in 1 2 3; do mkdir "$work/b$i"; "$work/bin/dhdfs-base" node add "$work/b$i" >/dev/null 2>&1; done
	  "$work/bin/dhdfs-base" mount --daemon "$work/base" )
	mounts+=("$work/base")
	targets="$targets base"
	bpid=$(mount_pid "$work/home-base" "$work/bin/dhdfs-base")
	daemon[base]=$bpid
fi

# The loopback at dhdfs's read-ahead is a second loopback of the same
# directory whose mount has dhdfs's read-ahead. Its replies are then up to
# 1 MiB, and splicing one needs a pipe of 1 MiB + header + a page: go-fuse
# reads /proc/sys/fs/pipe-max-size once, when it starts, and the kernel
# checks it again whenever a pipe grows (root without CAP_SYS_RESOURCE, as
# in containers). So it starts with pipe-max-size raised, which is raised
# again around each of its reads only; everything else runs with the
# system's setting. Its log must then hold no "trySplice" line.
pipemax=$(cat /proc/sys/fs/pipe-max-size)
pipe_raise() { if [ "$pipemax" -lt $((2 << 20)) ]; then echo $((2 << 20)) >/proc/sys/fs/pipe-max-size; fi; }
pipe_restore() { echo "$pipemax" >/proc/sys/fs/pipe-max-size; }
ra_ok=0
if [ "$(id -u)" = 0 ] && pipe_raise 2>/dev/null; then
	"$work/bin/loopback" "$work/loopsrc" "$work/loopra" 2>"$work/loopback-ra.log" & pids+=($!); mounts+=("$work/loopra")
	daemon[loopra]=$!
	wait_mounted "$work/loopra"
	pipe_restore
	cat "$(bdi "$work/mnt")" >"$(bdi "$work/loopra")" && ra_ok=1
fi

# Peak RssAnon of the dhdfs process, sampled in the background, with the
# workload that was running then (phase NAME says which).
peakfile="$work/peak"
echo "0 -" >"$peakfile"
phase() { echo "$1 on $(name "$2")" >"$work/phase"; }
echo setup >"$work/phase"
( peak=0; while kill -0 "$dpid" 2>/dev/null; do
	a=$(awk '/RssAnon/ {print $2}' "/proc/$dpid/status" 2>/dev/null || echo 0)
	if [ -n "$a" ] && [ "$a" -gt "$peak" ]; then
		peak=$a
		read -r ph <"$work/phase" || ph=-
		echo "$peak $ph" >"$peakfile"
	fi
	sleep 0.1
done ) & pids+=($!)

head -c $((256 << 20)) /dev/urandom >"$work/rand.src"

# Go's own source tree, copied to the scratch disk once so that every target
# copies it from the same place (the whole of src; with --quick its crypto,
# net and runtime directories). Each round appends 16 random bytes to every
# file, so no round's copy holds content dhdfs has seen before.
gosrc="$work/gosrc" goroot=$(go env GOROOT)
mkdir -p "$gosrc"
if [ "$quick" = 1 ]; then
	for p in crypto net runtime; do cp -a "$goroot/src/$p" "$gosrc/"; done
else
	cp -a "$goroot/src/." "$gosrc/"
fi
# One SQLite transaction per line, each inserting a fresh random 200-byte
# blob; synchronous=FULL is SQLite's default, set here to be sure.
{
	echo "PRAGMA synchronous=FULL;"
	for _ in $(seq "$nsync"); do echo "BEGIN; INSERT INTO t(v) VALUES(randomblob(200)); COMMIT;"; done
} >"$work/commits.sql"
sql() { sqlite3 "$1" <"$work/commits.sql" >/dev/null; }
warn=()

declare -A R S
for t in $targets; do
	cp "$work/rand.src" "$work/$t/rand"; sync "$work/$t/rand"
done
rm -f "$work/rand.src"

# Every workload runs in rounds: this machine's disk and CPU vary by a
# factor of two within minutes, so each round runs everything on every
# target in turn (the order reversed every other round), and the table
# shows each target's median. Each round writes fresh random data. dhdfs
# raises its mount's read-ahead (mount --read-ahead); one more cold read
# through the second loopback, whose read-ahead matches dhdfs's, shows what
# that alone gives a plain FUSE filesystem.
add() { S[$1,$2]="${S[$1,$2]:-} $3"; }
name() { case $1 in raw) echo raw ;; loop) echo loopback ;; merger) echo mergerfs ;; mnt) echo dhdfs ;; base) echo "dhdfs@$base_rev" ;; esac; }
lsl() { ls -l "$1" >/dev/null; }
copy() { cp "$1" "$2" && sync "$2"; }
settle_longest=0
order=$targets
for round in $(seq "$rounds"); do
	echo "== round $round of $rounds"
	head -c "$((mib << 20))" /dev/urandom >"$work/src.bin"
	head -c "$((mib << 20))" /dev/urandom >"$work/src2.bin"
	read -r gofiles gobytes < <("$work/bin/benchfiles" salt "$gosrc")
	for t in $order; do
		d="$work/$t"
		phase "seq write" "$t"
		drop_caches
		measure "$t" "$mib" dd if="$work/src.bin" of="$d/seq" bs=1M conv=fsync status=none
		add "$t" write "$M_RATE"
		add "$t" cpuwrite "$(per_gib "$M_CPU" "$mib")"
		add "$t" ampseq "$(per_byte "$M_WB" $((mib << 20)))"
		phase cp "$t"
		measure "$t" "$mib" copy "$work/src2.bin" "$d/cp"
		add "$t" cp "$M_RATE"
		rm -f "$d/cp"
		phase "seq read" "$t"
		drop_caches
		measure "$t" "$mib" dd if="$d/seq" of=/dev/null bs=1M status=none
		add "$t" read "$M_RATE"
		add "$t" cpuread "$(per_gib "$M_CPU" "$mib")"
		if [ "$t" = loop ] && [ "$ra_ok" = 1 ]; then
			pipe_raise
			drop_caches
			measure loopra "$mib" dd if="$work/loopra/seq" of=/dev/null bs=1M status=none
			pipe_restore
			add "$t" readra "$M_RATE"
		fi
		rm -f "$d/seq"
		phase "random read" "$t"
		drop_caches
		add "$t" rand "$(fio --name=rand --filename="$d/rand" --size=256M --rw=randread --bs=4k --ioengine=psync \
			--runtime="$fiotime" --time_based --invalidate=1 --output-format=terse 2>/dev/null | awk -F';' '{print $8}')"
		phase "small files" "$t"
		mkdir "$d/small" "$d/dirs"
		add "$t" create "$("$work/bin/benchfiles" -n "$nfiles" create "$d/small")"
		drop_caches
		measure "$t" "$nfiles" lsl "$d/small"
		add "$t" ls "$M_RATE"
		drop_caches
		add "$t" readsmall "$("$work/bin/benchfiles" -n "$nfiles" read "$d/small")"
		add "$t" delete "$("$work/bin/benchfiles" -n "$nfiles" delete "$d/small")"
		add "$t" mkdir "$("$work/bin/benchfiles" -n "$ndirs" mkdir "$d/dirs")"
		rm -rf "$d/dirs" "$d/small"

		# Random 4 KiB overwrites of a 64 MiB file of fresh random data
		# (every write fresh random bytes), one fsync at the end, counted
		# in fio's runtime. invalidate=0: fio would otherwise drop the
		# file's cached pages, writing them back, each time it has written
		# the whole file, which only the raw target's disk would notice.
		# dhdfs may keep writing afterwards (background work), so it first
		# finishes what came before, and after fio its bytes are counted
		# again once it has written nothing for 6 s.
		phase "random write" "$t"
		if have fio; then
			dd if=/dev/urandom of="$d/rw" bs=1M count=64 conv=fsync status=none
			drop_caches
			case $t in mnt|base) settle "${daemon[$t]}" 6 "$settle_max" ;; esac
			measure "$t" 1 fio --name=randwrite --filename="$d/rw" --size=64M --rw=randwrite --bs=4k \
				--ioengine=psync --invalidate=0 --end_fsync=1 --time_based --runtime="$fiotime" --refill_buffers \
				--randrepeat=0 --output-format=terse --output="$work/fio.out"
			app=$(awk -F';' '{ print $47 * 1024 }' "$work/fio.out")
			add "$t" randw "$(awk -F';' '{ print $49 }' "$work/fio.out")"
			add "$t" amprand "$(per_byte "$M_WB" "$app")"
			case $t in mnt|base)
				settle "${daemon[$t]}" 6 "$settle_max"
				if [ "$SETTLED" -gt "$settle_longest" ]; then settle_longest=$SETTLED; fi
			esac
			probe "$t"
			add "$t" amprands "$(per_byte $(( P_WB - M_WB0 )) "$app")"
			rm -f "$d/rw"
		fi

		# 200 fresh random bytes appended and fsynced, $nsync times.
		phase append "$t"
		add "$t" append "$("$work/bin/benchfiles" -n "$nsync" -size 200 append "$d")"
		rm -f "$d/append.log"

		# SQLite: $nsync transactions of one insert each, in a new database
		# with a rollback journal (the default, DELETE) and with a WAL.
		phase SQLite "$t"
		if have sqlite3; then
			for mode in delete wal; do
				rm -f "$d"/db "$d"/db-*
				sqlite3 "$d/db" "PRAGMA journal_mode=$mode; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);" >/dev/null
				measure "$t" "$nsync" sql "$d/db"
				add "$t" "sql$mode" "$M_RATE"
				n=$(sqlite3 "$d/db" "SELECT count(*) FROM t;")
				[ "$n" = "$nsync" ] || warn+=("WARNING: SQLite ($mode) on $(name "$t") holds $n rows, not $nsync")
				rm -f "$d"/db "$d"/db-*
			done
		fi

		# cp -a of Go's source tree, read from the page cache (read once
		# just before), not synced: like create files/s above.
		phase "cp -a Go src" "$t"
		find "$gosrc" -type f -exec cat {} + >/dev/null
		measure "$t" "$gofiles" cp -a "$gosrc" "$d/gosrc"
		add "$t" gocp "$M_RATE"
		rm -rf "$d/gosrc"
	done
	order=$(echo "$order" | tr ' ' '\n' | tac | tr '\n' ' ')
done
echo end >"$work/phase"
rm -f "$work/src.bin" "$work/src2.bin"
rows="write cp read readra rand create ls readsmall delete mkdir randw append sqldelete sqlwal gocp cpuwrite cpuread ampseq amprand amprands"
for t in $targets; do
	for k in $rows; do R[$t,$k]=$(median ${S[$t,$k]:-}); done
	rm -f "$work/$t/rand"
done
R[mnt,readra]=${R[mnt,read]}
[ -n "$base" ] && R[base,readra]=${R[base,read]}
# A reply the loopback could not splice was copied instead: say so.
for l in loopback loopback-ra; do
	[ -f "$work/$l.log" ] || continue
	n=$(grep -c trySplice "$work/$l.log" || true)
	if [ "$n" -gt 0 ]; then
		warn+=("WARNING: $l copied $n replies it could not splice; first: $(grep -m 1 trySplice "$work/$l.log")")
		if [ "$l" = loopback-ra ]; then
			R[loop,readra]="${R[loop,readra]}!"
			warn+=("WARNING: so the figure marked ! (loopback at dhdfs's read-ahead) includes those copies")
		fi
	fi
done

probe mnt
cpu=$(awk -v t="$P_TICKS" -v hz="$hz" 'BEGIN { printf "%.1f", t / hz }')
read -r peak peak_phase <"$peakfile"
peak=$(( peak / 1024 ))

echo
echo "dhdfs $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), size $size, 3 drives, replicas 2"
ra="kernel read-ahead: dhdfs $(cat "$(bdi "$work/mnt")") KiB, loopback $(cat "$(bdi "$work/loop")") KiB"
case " $targets " in *" merger "*) ra="$ra, mergerfs $(cat "$(bdi "$work/merger")") KiB" ;; esac
echo "$ra"
echo "each figure: the median of $rounds rounds; fio $(fio --version 2>/dev/null || echo -), $(sqlite3 --version 2>/dev/null | cut -d' ' -f1 | sed 's/^/SQLite /' || echo 'no SQLite'), mergerfs $(mergerfs --version 2>/dev/null | awk 'NR == 1 { print $3 }')"
echo "random writes: ${fiotime} s of 4 KiB writes to a 64 MiB file; appends and SQLite commits: $nsync each; cp -a: $gofiles files, $(( gobytes >> 20 )) MiB of $(go env GOVERSION) src$([ "$quick" = 1 ] && echo "/{crypto,net,runtime}")"
{
	printf "workload"
	for t in $targets; do printf "\t%s" "$(name "$t")"; done
	printf "\tdhdfs/raw\tdhdfs/loopback"
	[ -n "$base" ] && printf "\tdhdfs/base"
	printf "\n"
	for w in "write:seq write MiB/s (fsync)" "cp:cp MiB/s" "read:seq read MiB/s (cold)" \
		"readra:  same, loopback at dhdfs's read-ahead" "rand:4k random read IOPS" \
		"create:create files/s" "ls:ls -l files/s" "readsmall:read files/s" "delete:delete files/s" "mkdir:mkdir dirs/s" \
		"randw:4k random write IOPS (fsync at end)" "append:append 200 B + fsync /s" \
		"sqldelete:SQLite commits/s (rollback journal)" "sqlwal:SQLite commits/s (WAL)" "gocp:cp -a Go src files/s" \
		"cpuwrite:CPU s/GiB seq write *" "cpuread:CPU s/GiB seq read (cold) *" \
		"ampseq:disk bytes/app byte, seq write *" "amprand:disk bytes/app byte, 4k random write *" \
		"amprands:  same, dhdfs settled *"; do
		k=${w%%:*}
		printf "%s" "${w#*:}"
		for t in $targets; do printf "\t%s" "${R[$t,$k]}"; done
		awk -v d="${R[mnt,$k]}" -v r="${R[raw,$k]}" -v l="${R[loop,$k]}" -v b="${R[base,$k]:-}" -v hasb="${base:+1}" \
			'function ratio(a, b) { return b + 0 > 0 ? sprintf("%.2f", a / b) : "-" }
			BEGIN { printf "\t%s\t%s", ratio(d, r), ratio(d, l); if (hasb) printf "\t%s", ratio(d, b); printf "\n" }'
	done
} | column -t -s $'\t'
echo "* lower is better. CPU: of the filesystem's process (raw: of dd itself). disk bytes: what the"
echo "  filesystem's process (raw: the workload) sent to storage, from /proc/PID/io write_bytes; a page"
echo "  rewritten before the kernel wrote it back counts once. settled: until dhdfs wrote nothing for 6 s"
echo "  (longest wait ${settle_longest} s, at most ${settle_max} s); the others write nothing afterwards."
echo "dhdfs process: peak RssAnon $peak MiB (during $peak_phase), CPU $cpu s"
if [ -n "$base" ]; then
	# Every round's figure, so that a difference can be told from noise.
	echo "each round, dhdfs | dhdfs@$base_rev:"
	for k in $rows; do
		[ -n "${S[mnt,$k]:-}" ] && printf "  %-10s%s |%s\n" "$k" "${S[mnt,$k]}" "${S[base,$k]:-}"
	done
fi
for w in "${warn[@]}"; do echo "$w"; done

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
		p=$(head -n 1 "$h/lock"); peak=0
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
