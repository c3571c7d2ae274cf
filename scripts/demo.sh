#!/usr/bin/env bash
# The seed's scenario through a real mount: a pool of 4 drives with 2
# replicas, a file copied in with cp, the drive holding its first chunk
# taken offline, and the file read back identical with cat. Everything
# lives in a temp dir that is unmounted and removed at exit. Needs root or
# fusermount3 (scripts/test.sh installs fuse3).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH="$PATH:/usr/local/go/bin"
fi

work=$(mktemp -d /tmp/dhdfs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() {
	if grep -q " $mnt " /proc/mounts; then "$work/dhdfs" umount "$mnt" || umount -l "$mnt"; fi
	rm -rf "$work"
}
trap cleanup EXIT
export DHDFS_HOME="$work/home"
go build -o "$work/dhdfs" ./cmd/dhdfs
dhdfs() { "$work/dhdfs" "$@"; }
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step dhdfs init --chunk-size 64KiB
for i in 1 2 3 4; do
	mkdir "$work/disk$i"
	step dhdfs node add --name "d$i" "$work/disk$i"
done
mkdir "$mnt"
head -c 300000 /dev/urandom > "$work/notes.bin"

step dhdfs mount --daemon "$mnt"
step mkdir "$mnt/docs"
step cp "$work/notes.bin" "$mnt/docs/notes.bin"
step ls -l "$mnt/docs"
step df -h "$mnt"
step dhdfs umount "$mnt"

step dhdfs stat --chunks /docs/notes.bin
first=$(dhdfs stat --chunks /docs/notes.bin | awk '$1 == "0" { split($5, d, ","); print d[1] }')
echo; echo "The first chunk's first copy is on $first: unplug it."
step dhdfs node offline "$first"
step dhdfs node list

step dhdfs mount --daemon "$mnt"
printf '\n\033[1m$ cat %s | cmp - %s\033[0m\n' "$mnt/docs/notes.bin" "$work/notes.bin"
cat "$mnt/docs/notes.bin" | cmp - "$work/notes.bin"
echo "identical: the file survived the loss of drive $first"
step dhdfs umount "$mnt"
step dhdfs status

echo; echo "Bring $first back, heal, check, then lose the pool's home and rebuild it from one drive."
step dhdfs node online "$first"
step dhdfs heal
step dhdfs fsck
step rm -rf "$DHDFS_HOME"
step dhdfs recover --from "$work/disk2" --home "$DHDFS_HOME"
step dhdfs ls -l /docs
