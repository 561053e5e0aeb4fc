#!/usr/bin/env bash
# The measuring half of bench/net.sh; runs as root where /dev/kvm works, with the tun and
# vhost_net modules loaded and iperf3 and qemu-system-x86_64 installed.
#   net-inside.sh SECONDS ROUNDS QEMU_TAIL_TAP QEMU_TAIL_USER
# QEMU_TAIL_*: the small archives holding /etc/nkvm/cmd for QEMU's guests (bench/net.sh makes
# them), appended here to the full initramfs so that QEMU boots what nkvm boots.
# Each round boots, for every back end, nkvm then QEMU once; the guest measures the latency and
# guest → host, then serves one iperf3 client from here (host → guest).
# Environment: BENCH_VMMS (default "nkvm qemu"), BENCH_NETS (default "tap-vhost tap user"),
# BENCH_LOG=1 (every boot's output on stderr).
set -uo pipefail
secs=$1
rounds=$2
tail_tap=$3
tail_user=$4
# shellcheck source=bench/lib.sh
. bench/lib.sh
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
vmms=${BENCH_VMMS:-nkvm qemu}
nets=${BENCH_NETS:-tap-vhost tap user}
die() {
	echo "bench: $*" >&2
	exit 1
}
out=$(mktemp -d)
server=
cleanup() {
	[[ -z $server ]] || kill "$server" 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT
[[ -f $NKVM_INITRD_FULL ]] || die "no $NKVM_INITRD_FULL (nkvm setup builds it when fio and iperf3 are installed)"
[[ -c /dev/net/tun ]] || die "no /dev/net/tun (modprobe tun)"
[[ -c /dev/vhost-net ]] || die "no /dev/vhost-net (modprobe vhost_net)"

# qemu_initrd OUT TAIL: the full initramfs with TAIL appended at a 4-byte boundary, as cmd_initrd,
# and the NIC's module group between them (nkvm run appends it for its own guest).
qemu_initrd() {
	local size
	size=$(stat -c %s "$NKVM_INITRD_FULL")
	{
		cat "$NKVM_INITRD_FULL"
		head -c $(((4 - size % 4) % 4)) /dev/zero
		cat "$(dirname "$NKVM_INITRD_FULL")/initrd-modules/net.cpio"
		cat "$2"
	} >"$1"
}
qemu_initrd "$out/qemu-tap.cpio" "$tail_tap"
qemu_initrd "$out/qemu-user.cpio" "$tail_user"
# QEMU runs this on the TAP it creates, before the guest starts: the host side of its link.
cat >"$out/qemu-ifup" <<'EOF'
#!/bin/sh
ip addr add 10.0.4.1/24 dev "$1" && ip link set "$1" up
EOF
chmod +x "$out/qemu-ifup"

# The test host's server, for guest → host; on every address, so that user-mode networking
# reaches it through 127.0.0.1 and the TAPs through their own addresses.
iperf3 -s -p 5201 >"$out/server.log" 2>&1 &
server=$!

# run_one VMM NET ROUND: one boot; its figures go to $out/runs.txt as "VMM NET METRIC VALUE".
run_one() {
	local vmm=$1 net=$2 r=$3 log=$out/$1-$2-$3.log cmd target port=5201 pid t v
	local vhost=on
	[[ $net == tap ]] && vhost=off
	# nkvm's init configures eth0 itself; QEMU's guest gets the same addresses from its command.
	case $vmm-$net in
	nkvm-tap*)
		target=10.0.3.2
		cmd=(./nkvm run -c 2 -m 1G -i "$NKVM_INITRD_FULL"
			-n "tap,host_ip=10.0.3.1/24,guest_ip=10.0.3.2/24,vhost=$vhost,queues=1" --
			sh -c "$(cat bench/net-guest.sh)" sh 10.0.3.1 "$secs" - -)
		;;
	nkvm-user)
		target=127.0.0.1 port=5202
		cmd=(./nkvm run -c 2 -m 1G -i "$NKVM_INITRD_FULL" -n "user,hostfwd=tcp:5202-5201,queues=1"
			-- sh -c "$(cat bench/net-guest.sh)" sh 10.0.2.2 "$secs" - -)
		;;
	qemu-tap*)
		target=10.0.4.2
		cmd=(qemu-system-x86_64 -initrd "$out/qemu-tap.cpio"
			-netdev "tap,id=n0,ifname=qtap0,script=$out/qemu-ifup,downscript=no,vhost=$vhost")
		;;
	qemu-user)
		target=127.0.0.1 port=5202
		cmd=(qemu-system-x86_64 -initrd "$out/qemu-user.cpio"
			-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:5202-:5201")
		;;
	*) die "unknown VMM or back end: $vmm $net" ;;
	esac
	if [[ $vmm == qemu ]]; then
		# shellcheck disable=SC2054 # the commas are inside QEMU option values
		cmd+=(-M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic -nodefaults -no-reboot
			-serial stdio -kernel "$kernel" -append "$NKVM_APPEND"
			-device virtio-net-pci,netdev=n0 -device isa-debug-exit,iobase=0xf4,iosize=0x01)
	fi
	echo "bench: round $r: $vmm $net" >&2
	: >"$log"
	timeout 900 "${cmd[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	# host → guest: once the guest's server listens (after its own two measurements).
	for ((t = 0; t < 600; t++)); do
		grep -q NET-SERVER-READY "$log" && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
	done
	if grep -q NET-SERVER-READY "$log"; then
		v=$(iperf3 -c "$target" -p "$port" -t "$secs" -f m 2>&1 | awk '/receiver/ {
			for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") print $i }')
		[[ -n $v ]] && echo "$vmm $net h2g_mbps $v" >>"$out/runs.txt"
	fi
	# The guest ends after one client; one that got none (a failed client) is stopped.
	for ((t = 0; t < 60; t++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 1
	done
	kill "$pid" 2>/dev/null
	wait "$pid"
	# Not anchored at the start: QEMU's firmware leaves escape codes in front of the first line.
	tr -d '\r' <"$log" | sed -n "s/.*NET \([a-z0-9_]*\) \([0-9.]*\)$/$vmm $net \1 \2/p" \
		>>"$out/runs.txt"
	if [[ ${BENCH_LOG:-0} == 1 ]]; then
		tr -d '\r' <"$log" | sed "s/^/$vmm-$net-$r: /" >&2
	elif ! grep -q NET-DONE "$log"; then
		echo "bench: $vmm $net round $r did not finish; the end of its output:" >&2
		tr -d '\r' <"$log" | tail -n 15 >&2
	fi
}

touch "$out/runs.txt"
for ((r = 1; r <= rounds; r++)); do
	for net in $nets; do
		for vmm in $vmms; do run_one "$vmm" "$net" "$r"; done
	done
done
echo
echo "bench: every figure, one per line (VMM BACK-END METRIC VALUE):"
sed 's/^/net-run: /' "$out/runs.txt"

# med VMM NET METRIC: the median over the rounds ("-" when none).
med() { awk -v w="$1" -v n="$2" -v m="$3" '$1 == w && $2 == n && $3 == m { print $4 }' \
	"$out/runs.txt" | median; }
ratio() { awk -v n="$1" -v q="$2" 'BEGIN { print (n != "-" && q + 0) ? sprintf("%.2f", n / q) : "-" }'; }

echo
echo "Medians of $rounds rounds; iperf3 TCP ${secs} s, Mbit/s at the receiver; latency: ping -c 200" \
	"-i 0.01 average, ms (lower is better). nkvm -c 2 -m 1G, queues=1; QEMU 7.2 -smp 2 -m 1G," \
	"virtio-net-pci; same kernel and initramfs."
echo
echo "| back end | metric | nkvm | QEMU | nkvm ÷ QEMU |"
echo "|---|---|---|---|---|"
for net in $nets; do
	case $net in
	tap-vhost) label="tap, vhost=on" ;;
	tap) label="tap, vhost=off" ;;
	user) label="user" ;;
	esac
	for m in g2h_mbps h2g_mbps lat_ms; do
		case $m in
		g2h_mbps) what="guest → host Mbit/s" ;;
		h2g_mbps) what="host → guest Mbit/s" ;;
		lat_ms) what="ping avg ms" ;;
		esac
		n=$(med nkvm "$net" "$m")
		q=$(med qemu "$net" "$m")
		echo "| $label | $what | $n | $q | $(ratio "$n" "$q") |"
		echo "net-median: $net $m nkvm=$n qemu=$q ratio=$(ratio "$n" "$q")" >>"$out/machine"
	done
done
echo
cat "$out/machine"
