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
img=${TMPDIR:-/tmp}/nkvm-bench.img
out=$(mktemp -d)
dd if=/dev/zero of="$img" bs=1M count=640 2>/dev/null
direct=1
dd if=/dev/zero of="$img" bs=4096 count=1 oflag=direct conv=notrunc 2>/dev/null || direct=0
# Lines are picked out by their shape: QEMU's firmware leaves escape codes in front of the first.
pick() { tr -d '\r' | grep -oE '(randread|randwrite|seqread|seqwrite)[a-z0-9-]* [0-9]+ [0-9]+$'; }

for ((r = 1; r <= rounds; r++)); do
	echo "bench: round $r of $rounds: host fio on $img (direct=$direct), nkvm, qemu" >&2
	sh bench/blk-jobs.sh "$img" "$secs" "$direct" >>"$out/host"
	timeout 900 ./nkvm run -c 2 -m 1G -i "$NKVM_INITRD_FULL" -d "$img" -- \
		sh -c "$(cat bench/blk-jobs.sh)" sh /dev/vda "$secs" 1 </dev/null 2>&1 | pick >>"$out/nkvm"
	timeout 900 qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic \
		-nodefaults -no-reboot -serial stdio -kernel "$kernel" -initrd bench/blk-initrd.cpio \
		-append "$NKVM_APPEND" -drive "file=$img,format=raw,if=none,id=d0,aio=threads,cache=writeback" \
		-device virtio-blk-pci,drive=d0 -device isa-debug-exit,iobase=0xf4,iosize=0x01 \
		</dev/null 2>&1 | pick >>"$out/qemu"
done

# med WHO JOB FIELD: median over the rounds (field 2 IOPS, 3 KiB/s)
med() { awk -v j="$2" -v f="$3" '$1 == j { print $f }' "$out/$1" | median; }

echo
echo "Medians of $rounds rounds, ${secs} s per job:"
echo
echo "| job | nkvm IOPS | QEMU IOPS | host IOPS | nkvm ÷ QEMU | nkvm ÷ host | nkvm MB/s | QEMU MB/s | host MB/s | samples nkvm/QEMU |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for job in randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 seqread-1m seqwrite-1m; do
	ni=$(med nkvm "$job" 2) qi=$(med qemu "$job" 2) hi=$(med host "$job" 2)
	nk=$(med nkvm "$job" 3) qk=$(med qemu "$job" 3) hk=$(med host "$job" 3)
	ns=$(awk -v j="$job" '$1 == j { printf "%s,", $2 }' "$out/nkvm")
	qs=$(awk -v j="$job" '$1 == j { printf "%s,", $2 }' "$out/qemu")
	awk -v j="$job" -v ni="$ni" -v qi="$qi" -v hi="$hi" -v nk="$nk" -v qk="$qk" -v hk="$hk" \
		-v ns="${ns%,}" -v qs="${qs%,}" \
		'BEGIN { printf "| %s | %s | %s | %s | %s | %s | %.1f | %.1f | %.1f | %s / %s |\n", j, ni, qi, hi,
			qi + 0 ? sprintf("%.2f", ni / qi) : "-", hi + 0 ? sprintf("%.2f", ni / hi) : "-",
			nk / 1024, qk / 1024, hk / 1024, ns, qs }'
done
rm -rf "$out" "$img"
