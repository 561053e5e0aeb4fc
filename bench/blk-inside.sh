#!/usr/bin/env bash
# The measuring half of bench/blk.sh; runs where /dev/kvm works. Usage: blk-inside.sh SECONDS
set -uo pipefail
secs=$1
# shellcheck source=bench/lib.sh
. bench/lib.sh
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
img=${TMPDIR:-/tmp}/nkvm-bench.img
out=$(mktemp -d)
dd if=/dev/zero of="$img" bs=1M count=640 2>/dev/null
direct=1
dd if=/dev/zero of="$img" bs=4096 count=1 oflag=direct conv=notrunc 2>/dev/null || direct=0

echo "bench: host fio on $img (direct=$direct)" >&2
sh bench/blk-jobs.sh "$img" "$secs" "$direct" >"$out/host"
# Lines are picked out by their shape: QEMU's firmware leaves escape codes in front of the first.
echo "bench: nkvm" >&2
timeout 900 ./nkvm run -c 2 -m 1G -i "$NKVM_INITRD_FULL" -d "$img" -- sh -c "$(cat bench/blk-jobs.sh)" sh /dev/vda \
	"$secs" 1 </dev/null 2>&1 | tr -d '\r' | grep -oE '(randread|randwrite|seqread|seqwrite)[a-z0-9-]* [0-9]+ [0-9]+$' >"$out/nkvm"
echo "bench: qemu (virtio-blk-pci, aio=threads)" >&2
timeout 900 qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic -nodefaults \
	-no-reboot -serial stdio -kernel "$kernel" -initrd bench/blk-initrd.cpio -append "$NKVM_APPEND" \
	-drive "file=$img,format=raw,if=none,id=d0,aio=threads,cache=writeback" \
	-device virtio-blk-pci,drive=d0 -device isa-debug-exit,iobase=0xf4,iosize=0x01 \
	</dev/null 2>&1 | tr -d '\r' | grep -oE '(randread|randwrite|seqread|seqwrite)[a-z0-9-]* [0-9]+ [0-9]+$' >"$out/qemu"

echo
echo "| job | nkvm IOPS | QEMU IOPS | host IOPS | nkvm ÷ QEMU | nkvm ÷ host | nkvm MB/s | QEMU MB/s | host MB/s |"
echo "|---|---|---|---|---|---|---|---|---|"
while read -r job hi hk; do
	read -r _ ni nk < <(grep "^$job " "$out/nkvm" || echo "- 0 0")
	read -r _ qi qk < <(grep "^$job " "$out/qemu" || echo "- 0 0")
	awk -v j="$job" -v ni="$ni" -v qi="$qi" -v hi="$hi" -v nk="$nk" -v qk="$qk" -v hk="$hk" \
		'BEGIN { printf "| %s | %d | %d | %d | %s | %s | %.1f | %.1f | %.1f |\n", j, ni, qi, hi,
			qi ? sprintf("%.2f", ni / qi) : "-", hi ? sprintf("%.2f", ni / hi) : "-",
			nk / 1024, qk / 1024, hk / 1024 }'
done <"$out/host"
rm -rf "$out" "$img"
