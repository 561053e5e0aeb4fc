#!/usr/bin/env bash
# Control benchmark (issue 17): how fast a running guest answers pause → resume and stat while it
# does disk I/O, and how much of its dirtied memory the balloon gives back to the host; nkvm's
# control API against QEMU 7.2's QMP and `-device virtio-balloon` on the same kernel, initramfs
# and workload, side by side in one nested test host (which this host's KVM needs to run a
# standard guest). The latencies are timed three ways: the client processes (`nkvm pause` +
# `nkvm resume`, `nkvm stat`; for QEMU one socat QMP session a command), curl on nkvm's socket,
# and bench/ctl-rtt.c on the sockets themselves (no process start-up in the figure). The balloon:
# a 1 GiB guest fills and empties a tmpfs of FILL MiB, is ballooned to TARGET, and the VMM's RSS
# is read from /proc (peak and after). Prints a markdown table of medians with nkvm ÷ QEMU per
# row, and "control-run:", "control-median:" and "control-target:" lines for scripts.
#   bench/control.sh [SAMPLES [ROUNDS]]     (default 20 samples a boot and metric, 3 rounds)
# Environment: BENCH_VMMS="nkvm qemu" (the columns; "qemu-fpr" is QEMU's balloon with
# free-page-reporting=on), BENCH_FILL_MIB=768, BENCH_TARGET_MIB=256, BENCH_LOG=1 (every boot's
# output on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-20}
rounds=${2:-3}
fill=${BENCH_FILL_MIB:-768}
target=${BENCH_TARGET_MIB:-256}
# Whole numbers: the nested test host's time limit is worked out from them.
for n in "$samples" "$rounds" "$fill" "$target"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] ||
		{ echo "usage: bench/control.sh [SAMPLES [ROUNDS]] (whole numbers)" >&2; exit 2; }
done
# The fill goes to the guest's free memory (about 930 MiB of its 1 GiB) before the balloon.
((target < 1024 && fill <= 832)) ||
	{ echo "bench: BENCH_FILL_MIB at most 832, BENCH_TARGET_MIB below 1024" >&2; exit 2; }
make -s nkvm
./nkvm setup >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -std=gnu11 -Wall -Wextra -Werror -o "$work/ctl-rtt" bench/ctl-rtt.c
# QEMU's guest finds its command where nkvm's init looks for it.
NKVM_GROUPS="disk balloon" cmd_initrd "$work/qemu.cpio" "$NKVM_INITRD" sh -c "$(cat bench/control-guest.sh)" sh "$fill"
read -ra v <<<"${BENCH_VMMS:-nkvm qemu}"
inside=(bash bench/control-inside.sh "$samples" "$rounds")
env=(BENCH_VMMS="${BENCH_VMMS:-nkvm qemu}" BENCH_LOG="${BENCH_LOG:-0}")
if tests/nested/needed; then
	echo "bench: measuring inside the nested test host" >&2
	# curl and socat are optional there: their rows are "-" without them.
	opt=()
	for b in curl socat; do
		if command -v "$b" >/dev/null; then opt+=(--bin "$(command -v "$b")"); fi
	done
	# Per boot: about 2 minutes under TCG, the fill, the samples (a client process costs tens of
	# milliseconds there) and the balloon's inflation.
	tests/nested/run --mem 6144 --timeout $((600 + rounds * ${#v[@]} * (300 + fill / 2 + samples * 6))) \
		--bin "$(command -v qemu-system-x86_64)" --bin "$work/ctl-rtt" "${opt[@]}" \
		--file "$work/qemu.cpio:/tmp/ctl-qemu.cpio" \
		--file /usr/share/qemu --file /usr/share/seabios --file /usr/lib/ipxe/qemu \
		-- env "${env[@]}" "${inside[@]}" /tmp/ctl-qemu.cpio "$work/ctl-rtt" "$fill" "$target"
else
	env "${env[@]}" "${inside[@]}" "$work/qemu.cpio" "$work/ctl-rtt" "$fill" "$target"
fi
