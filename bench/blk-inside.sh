#!/usr/bin/env bash
# The measuring half of bench/blk.sh; runs where /dev/kvm works.
#   blk-inside.sh SECONDS ROUNDS
# Each round runs the jobs on the host, in nkvm and in QEMU, one after the other; the table gives
# the median over the rounds of each job's IOPS.
set -uo pipefail
secs=$1
rounds=${2:-3}
# shellcheck source=bench/lib.sh
. bench/lib.sh
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
format=${BENCH_FORMAT:-raw}
engines=${BENCH_ENGINES:-threads}
qemu_aios=${BENCH_QEMU_AIO:-threads}
img=${TMPDIR:-/tmp}/nkvm-bench.img
out=$(mktemp -d)
dd if=/dev/zero of="$img" bs=1M count=640 2>/dev/null
direct=1
dd if=/dev/zero of="$img" bs=4096 count=1 oflag=direct conv=notrunc 2>/dev/null || direct=0
if [[ $format == qcow2 ]]; then
	# Every cluster allocated, so reads measure the mapping, not zero-filling holes. The host's
	# fio still runs on a raw file of the same size: it is the limit of the file system.
	qemu-img create -q -f qcow2 -o preallocation=falloc "$img.qcow2" 640M
fi
guest_img=$img
[[ $format == qcow2 ]] && guest_img=$img.qcow2
# Lines are picked out by their shape: QEMU's firmware leaves escape codes in front of the first.
pick() { tr -d '\r' | grep -oE '(randread|randwrite|seqread|seqwrite)[a-z0-9-]* [0-9]+ [0-9]+$'; }

for ((r = 1; r <= rounds; r++)); do
	echo "bench: round $r of $rounds: host fio on $img (direct=$direct), nkvm ($engines)," \
		"qemu ($qemu_aios), $format image" >&2
	sh bench/blk-jobs.sh "$img" "$secs" "$direct" >>"$out/host"
	for e in $engines; do
		timeout 900 ./nkvm run -c 2 -m 1G -i "$NKVM_INITRD_FULL" -d "$guest_img,engine=$e" -- \
			sh -c "$(cat bench/blk-jobs.sh)" sh /dev/vda "$secs" 1 </dev/null 2>&1 |
			pick >>"$out/nkvm-$e"
	done
	for a in $qemu_aios; do
		timeout 900 qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic \
			-nodefaults -no-reboot -serial stdio -kernel "$kernel" -initrd bench/blk-initrd.cpio \
			-append "$NKVM_APPEND" \
			-drive "file=$guest_img,format=$format,if=none,id=d0,aio=$a,cache=writeback" \
			-device virtio-blk-pci,drive=d0 -device isa-debug-exit,iobase=0xf4,iosize=0x01 \
			</dev/null 2>&1 | pick >>"$out/qemu-$a"
	done
done

# med WHO JOB FIELD: median over the rounds (field 2 IOPS, 3 KiB/s)
med() { awk -v j="$2" -v f="$3" '$1 == j { print $f }' "$out/$1" | median; }

cols=()
for e in $engines; do cols+=("nkvm-$e"); done
for a in $qemu_aios; do cols+=("qemu-$a"); done
cols+=(host)
echo
echo "Medians of $rounds rounds, ${secs} s per job, $format image; IOPS (MB/s):"
echo
head="| job |"
rule="|---|"
for c in "${cols[@]}"; do head+=" $c |"; rule+="---|"; done
head+=" nkvm-${engines%% *} ÷ qemu-${qemu_aios%% *} |"
rule+="---|"
echo "$head"
echo "$rule"
for job in randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 seqread-1m seqwrite-1m; do
	row="| $job |"
	for c in "${cols[@]}"; do
		touch "$out/$c"
		row+=" $(med "$c" "$job" 2) ($(med "$c" "$job" 3 | awk '{ printf "%.1f", $1 / 1024 }')) |"
	done
	ni=$(med "nkvm-${engines%% *}" "$job" 2)
	qi=$(med "qemu-${qemu_aios%% *}" "$job" 2)
	row+=" $(awk -v n="$ni" -v q="$qi" 'BEGIN { print q + 0 ? sprintf("%.2f", n / q) : "-" }') |"
	echo "$row"
done
rm -rf "$out" "$img" "$img.qcow2"
