# shellcheck shell=sh
# The guest's half of bench/control.sh, run by the guest's busybox sh as its command:
#   sh -c "$(cat bench/control-guest.sh)" sh FILL_MIB
# First disk I/O on /dev/vda (16 MiB written, then read, O_DIRECT, over and over) while the
# host times its control requests, until the host writes STOP-IO over the disk's first block;
# then FILL_MIB MiB of memory is dirtied (a tmpfs filled, then emptied), for the balloon.
# Says CTL-IO-RUNNING, CTL-IO-DONE ROUNDS, CTL-FILLED (or CTL-FAIL WHY), then prints
# "CTL-MEM TOTAL_KB FREE_KB" every 2 s until the host ends it.
fill=$1
echo CTL-IO-RUNNING
i=0
# The flag is read with O_DIRECT too, so that the host's write to the image reaches it.
until dd if=/dev/vda bs=4096 count=1 iflag=direct 2>/dev/null | grep -q STOP-IO; do
	if ! dd if=/dev/zero of=/dev/vda bs=64k seek=16 count=256 oflag=direct 2>/dev/null ||
		! dd if=/dev/vda of=/dev/null bs=64k skip=16 count=256 iflag=direct 2>/dev/null; then
		echo "CTL-FAIL disk I/O"
		exit 1
	fi
	i=$((i + 1))
done
echo "CTL-IO-DONE $i"
if ! mkdir -p /fill || ! mount -t tmpfs -o size=$((fill + 64))m none /fill ||
	! dd if=/dev/zero of=/fill/f bs=1M count="$fill" 2>/dev/null || ! rm -f /fill/f; then
	echo "CTL-FAIL cannot fill $fill MiB"
	exit 1
fi
echo CTL-FILLED
while :; do
	echo "CTL-MEM $(awk '/^MemTotal:/ { t = $2 } /^MemFree:/ { f = $2 } END { print t, f }' /proc/meminfo)"
	sleep 2
done
