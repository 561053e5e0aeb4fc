#!/bin/sh
# The guest's half of bench/share.sh: the workload on one file system, each step timed.
#   sh share-jobs.sh KIND BIG_MIB      KIND: virtiofs | 9p | ext4
# The tree is a plain tar on /dev/vda (read-only); ext4's disk is /dev/vdb. Prints
# "SHARE-STEP KIND STEP SECONDS" per step and "SHARE-FILES KIND N" (the files the untar made,
# the same for every KIND or the rows do not compare). Busybox sh: the guest has nothing else.
kind=$1 mib=$2 m=/mnt/bench
fail() {
	echo "SHARE-ERROR $kind $*"
	exit 1
}
mkdir -p $m
if ! grep -q " $m " /proc/mounts; then
	case $kind in
	virtiofs) mount -t virtiofs share $m ;;
	# As the issue asks: QEMU's virtio-9p with the kernel's default msize and cache mode.
	9p) mount -t 9p -o trans=virtio,version=9p2000.L share $m ;;
	ext4) mkfs.ext4 -q -F /dev/vdb && mount /dev/vdb $m ;;
	*) false ;;
	esac || fail "mount"
fi
# /proc/uptime has centiseconds, and every step here takes seconds (busybox date has no %N).
now() {
	read -r up _ </proc/uptime
	echo "$up"
}
# Each step starts with nothing of the tree in the guest's caches (so the steps that read go to
# the host) and ends with everything it wrote synced (9p writes through, ext4 and virtio-fs may
# not).
step() {
	name=$1
	shift
	sync
	echo 3 >/proc/sys/vm/drop_caches
	t0=$(now)
	"$@" || fail "$name"
	sync
	t1=$(now)
	echo "SHARE-STEP $kind $name $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
}
untar() { mkdir $m/tree && tar -x -f /dev/vda -C $m/tree; }
stat_all() { find $m/tree -print0 | xargs -0 stat -c %s >/dev/null; }
read_all() { find $m/tree -type f -print0 | xargs -0 cat >/dev/null; }
write_big() { dd if=/dev/zero of=$m/big bs=1M count="$mib" 2>/dev/null; }
read_big() {
	dd if=$m/big of=/dev/null bs=1M 2>/dev/null && [ "$(stat -c %s $m/big)" = $((mib * 1048576)) ]
}
delete() { rm -rf $m/tree $m/big; }
step untar untar
echo "SHARE-FILES $kind $(find $m/tree -type f | wc -l)"
step find-stat stat_all
step read-all read_all
step write-big write_big
step read-big read_big
step delete delete
left=$(find $m -mindepth 1 -maxdepth 1 ! -name lost+found)
[ -z "$left" ] || fail "delete left $left"
umount $m || fail "umount"
