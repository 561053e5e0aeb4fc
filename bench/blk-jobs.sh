#!/bin/sh
# The fio jobs of bench/blk.sh, run against FILE for SECONDS each; one line per job:
# "NAME IOPS KiB/s". Runs in the guest (FILE a virtio-blk disk, DIRECT 1) and on the host (FILE
# the image; DIRECT 0 where its file system refuses O_DIRECT, e.g. tmpfs). In the guest a fourth
# number follows: the virtio-blk request interrupts the guest took during the job (ramp
# included), from /proc/interrupts ("virtioN-req.M" lines; on the host, its own disks' if any).
#   blk-jobs.sh FILE SECONDS DIRECT [SET]
# SET: issue3 (default; a 512 MiB range) or issue22: the concurrent 4k random writes of issue 22
# (QD16, QD32 and 16 threads at QD1) beside 4k random reads from one thread (QD16, QD32), on a
# 256 MiB range.
file=$1
secs=$2
direct=$3
set=${4:-issue3}
size=512M
[ "$set" = issue22 ] && size=256M
ints() {
	awk '$NF ~ /^virtio[0-9]+-req\.[0-9]+$/ { for (i = 2; i < NF; i++) if ($i ~ /^[0-9]+$/) n += $i }
		END { print n + 0 }' /proc/interrupts 2>/dev/null || echo 0
}
run() {
	name=$1
	shift
	before=$(ints)
	out=$(fio --name="$name" --filename="$file" --ioengine=libaio --direct="$direct" \
		--time_based --runtime="$secs" --ramp_time=1 --size="$size" --output-format=terse "$@")
	after=$(ints)
	# terse format v3: field 8 read IOPS, 7 read KiB/s, 49 write IOPS, 48 write KiB/s
	echo "$out" | awk -F';' -v n="$name" -v i="$((after - before))" \
		'{ printf "%s %d %d %d\n", n, $8 + $49, $7 + $48, i }'
}
if [ "$set" = issue22 ]; then
	run randread-4k-qd16 --rw=randread --bs=4k --iodepth=16
	run randread-4k-qd32 --rw=randread --bs=4k --iodepth=32
	run randwrite-4k-qd16 --rw=randwrite --bs=4k --iodepth=16
	run randwrite-4k-qd32 --rw=randwrite --bs=4k --iodepth=32
	# One line for the 16 jobs: their IOPS summed.
	run randwrite-4k-16t --rw=randwrite --bs=4k --iodepth=1 --numjobs=16 --group_reporting
	exit 0
fi
run randread-4k-qd1 --rw=randread --bs=4k --iodepth=1
run randread-4k-qd32 --rw=randread --bs=4k --iodepth=32
run randwrite-4k-qd32 --rw=randwrite --bs=4k --iodepth=32
run seqread-1m --rw=read --bs=1M --iodepth=8
run seqwrite-1m --rw=write --bs=1M --iodepth=8
