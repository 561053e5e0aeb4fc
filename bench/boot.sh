#!/usr/bin/env bash
# Boot-time benchmark: nkvm against QEMU (-M pc, and -M microvm if it boots) on the same kernel,
# initramfs, memory and CPUs, side by side in one run, inside the same (test) host.
# Measures launch → the guest's init running its command ("ready") and launch → VMM exit, plus
# nkvm's peak RSS minus the guest RAM the guest touched. Prints a markdown table of medians.
#   bench/boot.sh [RUNS]        (default 7 runs each, interleaved)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
make -s nkvm
./nkvm setup >/dev/null

# One initramfs for every VMM: the default guest's, plus the command its init runs (the same
# archive `nkvm run -- CMD` appends), so that QEMU boots exactly what nkvm boots.
# shellcheck source=bench/lib.sh
. bench/lib.sh
cmd_initrd bench/boot-initrd.cpio "$NKVM_INITRD" echo BENCH-READY
trap 'rm -f bench/boot-initrd.cpio' EXIT

if tests/nested/needed; then
	echo "bench: this host's KVM cannot run a standard guest: measuring inside the nested test host" >&2
	tests/nested/run --mem 4096 --timeout 3000 --bin "$(command -v qemu-system-x86_64)" \
		--file /usr/share/qemu --file /usr/share/seabios --file /usr/lib/ipxe/qemu \
		-- bash bench/boot-inside.sh "$runs" bench/boot-initrd.cpio
else
	bash bench/boot-inside.sh "$runs" bench/boot-initrd.cpio
fi
