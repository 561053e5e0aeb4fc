#!/usr/bin/env bash
# Boot-time benchmark and breakdown: nkvm against QEMU on the same kernel, initramfs, memory and
# CPUs, side by side and interleaved in one run, inside the same (test) host. VMMs and kernels:
#   nkvm          the bzImage                 qemu-pc       -M pc, the bzImage
#   nkvm-pvh      the vmlinux, if -k takes it qemu-pc-pvh   -M pc, the vmlinux through PVH
#                                             qemu-microvm  -M microvm, the vmlinux through PVH
# (the vmlinux extracted from the bzImage; VMLINUX=FILE gives one). A VMM/kernel pair that does
# not reach the guest's command in one trial boot is left out and said so. Each boot splits:
#   launch → kernel entry     nkvm only: vCPU 0's first KVM_RUN (NKVM_STATS' entry_epoch_us)
#   launch → printk clock 0   the kernel's clock starting (its first printk), found by writing a
#                             mark into /dev/kmsg with the command's output and reading its
#                             printk timestamp back with dmesg
#   printk 0 → init           the printk timestamp of "Run /init as init process"
#   init → output             the guest's init (its module loads) up to the command's output
#   output → exit             the rest of the command (a dmesg | grep) and the VMM's exit
# plus nkvm's monitor overhead (RSS − guest RAM resident, at exit) and one boot's exits by reason
# and port (NKVM_STATS). Prints markdown tables of medians.
#   bench/boot.sh [RUNS]        (default 7 runs each, interleaved)
# To measure one change on its own, in the same run:
#   BENCH_BASE=REV        adds nkvm-base: nkvm built from git revision REV, booting the bzImage
#   BENCH_NKVM="NAME:PARAMS[:OPTIONS];..."  adds nkvm-NAME: this nkvm with kernel parameters
#                         PARAMS and `nkvm run` options OPTIONS added
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
make -s nkvm
./nkvm setup >/dev/null

# shellcheck source=bench/lib.sh
. bench/lib.sh
# One initramfs for every VMM: the default guest's, plus the command its init runs (the same
# archive `nkvm run -- CMD` appends), so that QEMU boots exactly what nkvm boots.
cmd_initrd bench/boot-initrd.cpio "$NKVM_INITRD" sh -c \
	'echo BENCH-MARK >/dev/kmsg; echo BENCH-READY; dmesg | grep -E "BENCH-MARK|Run .* as init process"; echo BENCH-END'
# The kernel's vmlinux beside it, in bench/ (which the nested test host gets whole).
vmlinux=bench/boot-vmlinux
if [[ -n ${VMLINUX:-} ]]; then
	cp "$VMLINUX" "$vmlinux"
else
	extract_vmlinux "${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz" "$vmlinux" || vmlinux=
fi
trap 'rm -rf bench/boot-initrd.cpio bench/boot-vmlinux bench/nkvm-base' EXIT
if [[ -n ${BENCH_BASE:-} ]]; then
	base_src=$(mktemp -d)
	git archive "$BENCH_BASE" | tar -x -C "$base_src"
	make -s -C "$base_src" nkvm >/dev/null
	cp "$base_src/nkvm" bench/nkvm-base
	rm -rf "$base_src"
fi

if tests/nested/needed; then
	echo "bench: this host's KVM cannot run a standard guest: measuring inside the nested test host" >&2
	tests/nested/run --mem 4096 --timeout 3000 --bin "$(command -v qemu-system-x86_64)" \
		--file /usr/share/qemu --file /usr/share/seabios --file /usr/lib/ipxe/qemu \
		-- bash bench/boot-inside.sh "$runs" bench/boot-initrd.cpio "$vmlinux" "${BENCH_NKVM:-}"
else
	bash bench/boot-inside.sh "$runs" bench/boot-initrd.cpio "$vmlinux" "${BENCH_NKVM:-}"
fi
