#!/usr/bin/env bash
# Block benchmark: the same fio jobs inside the guest for nkvm and for QEMU (virtio-blk-pci,
# aio=threads) on the same raw image, and fio on the host against the same file as the limit,
# side by side in one run (inside the nested test host where this host's KVM cannot run a
# standard guest). Prints a markdown table of IOPS / MB/s per job.
#   bench/blk.sh [SECONDS_PER_JOB [ROUNDS]]      (default 6 s, 3 rounds; medians reported)
# Environment: BENCH_FORMAT=raw|qcow2 (the image; qcow2 fully allocated, default raw),
# BENCH_ENGINES="threads aio io_uring" (nkvm's engines to run, each a column; default threads),
# BENCH_QEMU_AIO="threads io_uring" (QEMU's aio= modes, each a column; default threads).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}
rounds=${2:-3}
make -s nkvm
./nkvm setup >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
# The guest runs the job script from its command line: it has no other way to get it.
cmd_initrd bench/blk-initrd.cpio "$NKVM_INITRD_FULL" sh -c "$(cat bench/blk-jobs.sh)" sh /dev/vda \
	"$secs" 1
trap 'rm -f bench/blk-initrd.cpio' EXIT
if tests/nested/needed; then
	echo "bench: measuring inside the nested test host" >&2
	tests/nested/run --mem 6144 --timeout 3000 --bin "$(command -v qemu-system-x86_64)" \
		--bin "$(command -v fio)" --bin "$(command -v qemu-img)" --file "$NKVM_INITRD_FULL:/cache/nkvm/initrd-full.cpio" \
		--file /usr/share/qemu --file /usr/share/seabios --file /usr/lib/ipxe/qemu \
		-- env BENCH_FORMAT="${BENCH_FORMAT:-raw}" BENCH_ENGINES="${BENCH_ENGINES:-threads}" \
		BENCH_QEMU_AIO="${BENCH_QEMU_AIO:-threads}" bash bench/blk-inside.sh "$secs" "$rounds"
else
	bash bench/blk-inside.sh "$secs" "$rounds"
fi
