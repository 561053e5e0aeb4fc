#!/usr/bin/env bash
# Block benchmark: the same fio jobs inside the guest for nkvm and for QEMU (virtio-blk-pci,
# aio=threads) on the same raw image, and fio on the host against the same file as the limit,
# side by side in one run (inside the nested test host where this host's KVM cannot run a
# standard guest). Prints a markdown table of IOPS / MB/s per job.
#   bench/blk.sh [SECONDS_PER_JOB [ROUNDS]]      (default 6 s, 3 rounds; medians reported)
# Environment: BENCH_FORMAT=raw|qcow2 (the image; qcow2 fully allocated, default raw),
# BENCH_ENGINES="threads aio io_uring" (nkvm's engines to run, each a column; default threads),
# BENCH_QEMU_AIO="threads io_uring" (QEMU's aio= modes, each a column; default threads; native
# needs BENCH_CACHE=none), BENCH_CACHE=writeback|none (the disks' cache mode for nkvm and QEMU,
# default writeback), BENCH_JOBS=issue3|issue22 (the fio jobs, see bench/blk-jobs.sh; issue22 on a
# 256 MiB image, default issue3), BENCH_BASE=REV (also nkvm built from git revision REV, run right
# before this tree's in every round, columns "base-ENGINE": before and after in one run). With none everything is O_DIRECT (host fio direct=1 too), so the engines
# differ for real (aio falls back to threads without O_DIRECT); in the nested test host the
# image then goes on an ext4 on a loop device, since the test host's tmpfs refuses O_DIRECT.
# Outside it, TMPDIR must be on a file system that takes O_DIRECT; the run stops if it is not.
# Per-engine comparison:
#   BENCH_CACHE=none BENCH_ENGINES="threads aio io_uring" BENCH_QEMU_AIO="threads io_uring" \
#     bench/blk.sh
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-6}
rounds=${2:-3}
# Whole numbers: the nested test host's time limit is worked out from them.
[[ $secs =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]] ||
	{ echo "usage: bench/blk.sh [SECONDS_PER_JOB [ROUNDS]] (whole numbers)" >&2; exit 2; }
cache=${BENCH_CACHE:-writeback}
case $cache in
writeback | none) ;;
*) echo "bench: BENCH_CACHE is writeback or none, not $cache" >&2; exit 2 ;;
esac
make -s nkvm
./nkvm setup >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
# The guest runs the job script from its command line: it has no other way to get it.
jobs=${BENCH_JOBS:-issue3}
NKVM_GROUPS=disk cmd_initrd bench/blk-initrd.cpio "$NKVM_INITRD_FULL" sh -c "$(cat bench/blk-jobs.sh)" sh /dev/vda \
	"$secs" 1 "$jobs"
base=
trap 'rm -f bench/blk-initrd.cpio; [[ -z $base ]] || rm -rf "$base"' EXIT
base_bin=
if [[ -n ${BENCH_BASE:-} ]]; then
	base=$(mktemp -d)
	git archive "$BENCH_BASE" | tar -x -C "$base"
	make -s -C "$base" nkvm
	# Inside the repo's directory, where the nested test host's /repo finds it too.
	base_bin=build/nkvm-base
	mkdir -p build
	cp "$base/nkvm" "$base_bin"
fi
if tests/nested/needed; then
	echo "bench: measuring inside the nested test host, cache=$cache" >&2
	# cache=none needs O_DIRECT, which the test host's tmpfs (kernel 6.1) refuses: blk-inside.sh
	# then makes an ext4 on a loop device for the image (as tests/integration/on-ext4.sh does),
	# for which the test host needs mkfs.ext4 and the loop module.
	ext4=()
	[[ $cache == none ]] && ext4=(--bin "$(command -v mkfs.ext4)" --module loop)
	# The test host's time limit grows with the columns: 3000 s held 3 rounds of host, one nkvm
	# engine and one QEMU mode at 6 s per job, so about 285 s per run (a guest booted under TCG
	# and its 5 jobs) and 600 s for the rest. Three engines and two QEMU modes take nearly twice.
	read -ra e <<<"${BENCH_ENGINES:-threads}"
	read -ra a <<<"${BENCH_QEMU_AIO:-threads}"
	nb=1
	[[ -n $base_bin ]] && nb=2
	limit=$((600 + rounds * (1 + ${#e[@]} * nb + ${#a[@]}) * (250 + 5 * (secs + 1))))
	base_file=()
	[[ -n $base_bin ]] && base_file=(--file "$base_bin:$base_bin")
	tests/nested/run --mem 6144 --timeout "$limit" --bin "$(command -v qemu-system-x86_64)" \
		--bin "$(command -v fio)" --bin "$(command -v qemu-img)" --file "$NKVM_INITRD_FULL:/cache/nkvm/initrd-full.cpio" \
		--file /usr/share/qemu --file /usr/share/seabios --file /usr/lib/ipxe/qemu "${ext4[@]}" "${base_file[@]}" \
		-- env BENCH_FORMAT="${BENCH_FORMAT:-raw}" BENCH_ENGINES="${BENCH_ENGINES:-threads}" \
		BENCH_QEMU_AIO="${BENCH_QEMU_AIO:-threads}" BENCH_CACHE="$cache" BENCH_JOBS="$jobs" \
		BENCH_BASE_NKVM="$base_bin" \
		BENCH_LOOP_EXT4="$([[ $cache == none ]] && echo 1 || echo 0)" \
		bash bench/blk-inside.sh "$secs" "$rounds"
else
	BENCH_JOBS=$jobs BENCH_BASE_NKVM=$base_bin bash bench/blk-inside.sh "$secs" "$rounds"
fi
