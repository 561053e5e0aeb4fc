#!/usr/bin/env bash
# Network benchmark: nkvm's virtio-net (-n tap,vhost=on|off and -n user) against QEMU 7.2's
# virtio-net-pci (-netdev tap,vhost=on|off and -netdev user) on the same kernel and initramfs,
# side by side in one nested test host (which this host's KVM needs to run a standard guest).
# Rows: iperf3 TCP guest → host and host → guest (the test host's own iperf3 at the other end;
# for user-mode networking through 10.0.2.2 and a hostfwd), and ping's average round trip to the
# host side. Prints a markdown table of medians with nkvm ÷ QEMU per row, and "net-run:" and
# "net-median:" lines for scripts. Traffic stays between each guest and the test host.
#   bench/net.sh [SECONDS [ROUNDS]]        (default 10 s per iperf3 run, 3 rounds)
# Environment: BENCH_VMMS="nkvm qemu" (the columns run), BENCH_NETS="tap-vhost tap user" (the
# back ends: tap-vhost is vhost=on, tap is vhost=off, the userspace path), BENCH_LOG=1 (every
# boot's output on stderr).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
# Whole numbers: the nested test host's time limit is worked out from them.
[[ $secs =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]] ||
	{ echo "usage: bench/net.sh [SECONDS [ROUNDS]] (whole numbers)" >&2; exit 2; }
make -s nkvm
./nkvm setup >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
command -v iperf3 >/dev/null || { echo "bench: iperf3 missing (scripts/install-deps.sh)" >&2; exit 1; }
cpio -it --quiet <"$NKVM_INITRD_FULL" | grep -qx usr/bin/iperf3 ||
	{ echo "bench: $NKVM_INITRD_FULL has no iperf3 (nkvm setup adds it when iperf3 is installed)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# QEMU's guests: /etc/nkvm/cmd alone (net-inside.sh appends it to the full initramfs there, to
# carry one 92 MB archive into the test host rather than three); their command configures eth0
# as nkvm's init does from guest_ip= and for -n user.
guest=$(cat bench/net-guest.sh)
for net in tap user; do
	if [[ $net == tap ]]; then
		args=(10.0.4.1 "$secs" 10.0.4.2/24 -)
	else
		args=(10.0.2.2 "$secs" 10.0.2.15/24 10.0.2.2)
	fi
	empty=$work/empty
	: >"$empty"
	cmd_initrd "$work/tail-$net.cpio" "$empty" sh -c "$guest" sh "${args[@]}"
done
read -ra v <<<"${BENCH_VMMS:-nkvm qemu}"
read -ra n <<<"${BENCH_NETS:-tap-vhost tap user}"
# Per boot: the full initramfs under TCG (about 60 s), three measurements and their waits.
limit=$((600 + rounds * ${#v[@]} * ${#n[@]} * (150 + 3 * secs)))
env=(BENCH_VMMS="${BENCH_VMMS:-nkvm qemu}" BENCH_NETS="${BENCH_NETS:-tap-vhost tap user}"
	BENCH_LOG="${BENCH_LOG:-0}")
if tests/nested/needed; then
	echo "bench: measuring inside the nested test host" >&2
	tests/nested/run --mem 6144 --timeout "$limit" --module vhost_net \
		--bin "$(command -v qemu-system-x86_64)" --bin "$(command -v iperf3)" \
		--file "$NKVM_INITRD_FULL:/cache/nkvm/initrd-full.cpio" \
		--file "$work/tail-tap.cpio:/tmp/net-tail-tap.cpio" \
		--file "$work/tail-user.cpio:/tmp/net-tail-user.cpio" \
		--file /usr/share/qemu --file /usr/share/seabios --file /usr/lib/ipxe/qemu \
		-- env "${env[@]}" bash bench/net-inside.sh "$secs" "$rounds" /tmp/net-tail-tap.cpio \
		/tmp/net-tail-user.cpio
else
	env "${env[@]}" bash bench/net-inside.sh "$secs" "$rounds" "$work/tail-tap.cpio" \
		"$work/tail-user.cpio"
fi
