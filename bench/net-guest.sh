# The guest's half of bench/net.sh, run by the guest's busybox sh as its command:
#   sh -c "$(cat bench/net-guest.sh)" sh HOST SECONDS ADDR/PREFIX|- GATEWAY|-
# HOST is the test host's side (the TAP's address, or 10.0.2.2 for user-mode networking).
# ADDR/PREFIX and GATEWAY configure eth0 for a VMM whose guest has no network set-up (QEMU);
# "-" for nkvm, whose init applies guest_ip= and the user-mode addresses itself.
# Prints "NET lat_ms X" (ping's average round trip) and "NET g2h_mbps X" (iperf3 to HOST's
# server), then serves one iperf3 client on port 5201 (the test host's, host to guest), after
# saying NET-SERVER-READY. Each wait is bounded, so that a broken NIC ends the guest.
host=$1 secs=$2 addr=$3 gw=$4
if [ "$addr" != - ]; then
	# nkvm's init loads virtio_net only for nkvm's own NICs (/etc/nkvm/net).
	modprobe virtio_net 2>/dev/null
	ip link set eth0 up && ip addr add "$addr" dev eth0 || echo "NET-FAIL cannot configure eth0"
	[ "$gw" = - ] || ip route add default via "$gw" || echo "NET-FAIL no route via $gw"
fi
i=0
until ping -c 1 -W 1 "$host" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 30 ] || { echo "NET-FAIL $host unreachable"; ip addr; exit 1; }
done
ping -q -c 200 -i 0.01 "$host" | sed -n 's|.*min/avg/max = [0-9.]*/\([0-9.]*\)/.*|NET lat_ms \1|p'
# The receiver's figure: what arrived, not what the sender queued.
iperf3 -c "$host" -t "$secs" -f m 2>&1 | awk '/receiver/ {
	for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") print "NET g2h_mbps", $i }'
iperf3 -s -1 -p 5201 >/tmp/iperf3-server.log 2>&1 &
i=0
until netstat -ltn | grep -q ':5201 '; do
	i=$((i + 1))
	[ $i -lt 30 ] || { echo "NET-FAIL iperf3 server not listening"; exit 1; }
	sleep 1
done
echo NET-SERVER-READY
wait
echo NET-DONE
