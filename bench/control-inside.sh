#!/usr/bin/env bash
# The measuring half of bench/control.sh; runs as root where /dev/kvm works, with
# qemu-system-x86_64 and bench/ctl-rtt.c's binary (curl and socat when there are).
#   control-inside.sh SAMPLES ROUNDS QEMU_INITRD CTL_RTT FILL_MIB TARGET_MIB
# Each round boots, for every VMM, one 1 GiB guest of bench/control-guest.sh with a 64 MiB raw
# disk: while the guest does disk I/O, SAMPLES pause → resume round trips and SAMPLES stats
# each way there is (the client commands, curl, ctl-rtt on the socket itself); then the guest
# dirties FILL_MIB MiB, is ballooned down to TARGET_MIB, and the VMM's RSS is read.
# QEMU_INITRD is the default initramfs with the guest's command (bench/lib.sh's cmd_initrd).
# Environment: BENCH_VMMS (default "nkvm qemu"; "qemu-fpr" adds QEMU's balloon with
# free-page-reporting=on), BENCH_LOG=1 (every boot's output on stderr).
set -uo pipefail
samples=$1 rounds=$2 qinitrd=$3 rtt=$4 fill=$5 target=$6
# shellcheck source=bench/lib.sh
. bench/lib.sh
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
vmms=${BENCH_VMMS:-nkvm qemu}
out=$(mktemp -d)
pid=
cleanup() {
	[[ -z $pid ]] || kill "$pid" 2>/dev/null
	rm -rf "$out"
}
trap cleanup EXIT
have_curl=0 have_socat=0
command -v curl >/dev/null && have_curl=1
command -v socat >/dev/null && have_socat=1
guest=$(cat bench/control-guest.sh)
# nkvm's control sockets: root's directory (src/api/socket.c).
nkvm_sock() { echo "/run/nkvm/$1.sock"; }

# wait_line LOG SECONDS PATTERN: until LOG has a line matching PATTERN, or the VMM ended.
wait_line() {
	local t
	for ((t = 0; t < $2 * 2; t++)); do
		grep -q "$3" "$1" && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}

# time_cmd VMM METRIC CMD...: runs CMD SAMPLES times; each run's milliseconds into runs.txt.
time_cmd() {
	local vmm=$1 metric=$2 s t0 t1
	shift 2
	for ((s = 0; s < samples; s++)); do
		t0=$EPOCHREALTIME
		"$@" >/dev/null 2>>"$out/errors" || { echo "bench: $vmm $metric: $* failed" >&2; return; }
		t1=$EPOCHREALTIME
		echo "$vmm $metric $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) * 1000 }')" \
			>>"$out/runs.txt"
	done
}

# time_raw VMM "METRIC..." ARGS...: ctl-rtt's microseconds, as milliseconds into runs.txt: the
# first METRIC is the round's, the next ones each request's.
time_raw() {
	local vmm=$1 metrics=$2
	shift 2
	"$rtt" "$@" 2>>"$out/errors" | awk -v v="$vmm" -v m="$metrics" '
		BEGIN { n = split(m, name, " ") }
		{ for (i = 1; i <= n && i <= NF; i++) printf "%s %s %.2f\n", v, name[i], $i / 1000 }' \
		>>"$out/runs.txt"
}

nkvm_pause_resume() { ./nkvm pause "$1" && ./nkvm resume "$1"; }
curl_api() { curl -sSf --unix-socket "$1" -X "$2" "http://localhost/api/v1/$3"; }
curl_pause_resume() { curl_api "$1" PUT vm.pause && curl_api "$1" PUT vm.resume; }
# One QMP client process a command, as `nkvm pause` is one: the greeting and
# qmp_capabilities, then the command; QEMU closes the connection at our end of input.
# The replies are read whole (grep -q would end the pipe early, and pipefail fail it).
qmp_once() {
	local r
	r=$(printf '{"execute": "qmp_capabilities"}\n{"execute": "%s"}\n' "$2" |
		socat - "UNIX-CONNECT:$1") && [[ $(grep -c '"return": {}' <<<"$r") == 2 ]]
}
qmp_stop_cont() { qmp_once "$1" stop && qmp_once "$1" cont; }
qmp_stat() {
	local r
	r=$(printf '%s\n' '{"execute": "qmp_capabilities"}' '{"execute": "query-status"}' \
		'{"execute": "query-blockstats"}' | socat - "UNIX-CONNECT:$1") &&
		[[ $r == *'"status"'*'"device"'* ]]
}

# rss KEY: VmRSS or VmHWM of the VMM, in MiB.
rss() { awk -v k="$1:" '$1 == k { printf "%d", $2 / 1024 }' "/proc/$pid/status"; }

# balloon_settled VMM SOCK: the balloon reached the target (nkvm: its size, the guest's memory
# less the target; QEMU: "actual", what the guest keeps).
balloon_settled() {
	local r
	if [[ $1 == nkvm ]]; then
		r=$(./nkvm stat "$2" 2>/dev/null)
		[[ $r == *"balloon: target=$((1024 - target))M actual=$((1024 - target))M"* ]]
	else
		r=$("$rtt" qmp-say "$2" query-balloon 2>/dev/null)
		[[ $r == *"\"actual\": $((target << 20))}"* ]]
	fi
}

# run_one VMM ROUND: one boot; its figures go to runs.txt as "VMM METRIC VALUE".
run_one() {
	local vmm=$1 r=$2 log=$out/$1-$2.log img=$out/disk.img name=ctl-bench sock cmd t0 t s
	local hwm before after
	truncate -s 64M "$img"
	case $vmm in
	nkvm)
		sock=$(nkvm_sock "$name")
		cmd=(./nkvm run --name "$name" -c 2 -m 1G -d "$img,format=raw,cache=writeback" --
			sh -c "$guest" sh "$fill")
		;;
	qemu | qemu-fpr)
		sock=$out/qmp.sock
		local bal=virtio-balloon
		[[ $vmm == qemu-fpr ]] && bal+=,free-page-reporting=on
		# shellcheck disable=SC2054 # the commas are inside QEMU option values
		cmd=(qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic -nodefaults
			-no-reboot -serial stdio -kernel "$kernel" -initrd "$qinitrd" -append "$NKVM_APPEND"
			-drive "file=$img,format=raw,if=none,id=d0,cache=writeback"
			-device virtio-blk-pci,drive=d0 -device "$bal"
			-qmp "unix:$sock,server=on,wait=off")
		;;
	*) echo "bench: unknown VMM $vmm" >&2; return ;;
	esac
	echo "bench: round $r: $vmm" >&2
	"${cmd[@]}" </dev/null >"$log" 2>&1 &
	pid=$!
	if wait_line "$log" 300 CTL-IO-RUNNING; then
		sleep 3 # the I/O under way
		if [[ $vmm == nkvm ]]; then
			time_cmd nkvm pr_client nkvm_pause_resume "$name"
			time_cmd nkvm stat_client ./nkvm stat "$name"
			time_cmd nkvm start_client ./nkvm version
			if ((have_curl)); then
				time_cmd nkvm pr_curl curl_pause_resume "$sock"
				time_cmd nkvm stat_curl curl_api "$sock" GET vm.counters
				time_cmd nkvm start_curl curl --version
			fi
			time_raw nkvm "pr_raw pause_raw resume_raw" http "$sock" "$samples" \
				PUT:vm.pause PUT:vm.resume
			time_raw nkvm "stat_raw info_raw counters_raw" http "$sock" "$samples" \
				GET:vm.info GET:vm.counters
		else
			if ((have_socat)); then
				time_cmd "$vmm" pr_client qmp_stop_cont "$sock"
				time_cmd "$vmm" stat_client qmp_stat "$sock"
				time_cmd "$vmm" start_client socat -V
			fi
			time_raw "$vmm" "pr_raw pause_raw resume_raw" qmp "$sock" "$samples" stop cont
			time_raw "$vmm" "stat_raw info_raw counters_raw" qmp "$sock" "$samples" \
				query-status query-blockstats
		fi
		# The guest must still have been doing I/O at the end: its loop ends only on our flag.
		grep -q CTL-IO-DONE "$log" && echo "bench: $vmm: the guest's I/O ended early" >&2
		printf STOP-IO | dd of="$img" bs=512 count=1 conv=notrunc 2>/dev/null
	fi
	if wait_line "$log" 900 CTL-FILLED; then
		sleep 5 # free page reporting waits 2 s after pages are freed (mm/page_reporting.c)
		hwm=$(rss VmHWM) before=$(rss VmRSS)
		t0=$EPOCHREALTIME
		if [[ $vmm == nkvm ]]; then
			./nkvm balloon "$name" "${target}M" >&2
		else
			"$rtt" qmp-say "$sock" \
				"{\"execute\": \"balloon\", \"arguments\": {\"value\": $((target << 20))}}" >/dev/null
		fi
		for ((t = 0; t < 600; t++)); do
			balloon_settled "$vmm" "$([[ $vmm == nkvm ]] && echo "$name" || echo "$sock")" && break
			sleep 0.5
		done
		s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
		sleep 5 # what the last pages' MADV_DONTNEED frees
		after=$(rss VmRSS)
		if ((t < 600)); then
			{
				echo "$vmm rss_peak_mib $hwm"
				echo "$vmm rss_before_mib $before"
				echo "$vmm rss_after_mib $after"
				echo "$vmm returned_mib $((hwm - after))"
				# The share of the VMM's peak RSS given back.
				echo "$vmm returned_share $(awk -v a=$((hwm - after)) -v b="$hwm" \
					'BEGIN { printf "%.2f", a / b }')"
				echo "$vmm balloon_s $s"
			} >>"$out/runs.txt"
		else
			echo "bench: $vmm round $r: the balloon did not reach ${target}M in 300 s" >&2
		fi
	fi
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=
	rm -f "$img"
	if [[ ${BENCH_LOG:-0} == 1 ]]; then
		tr -d '\r' <"$log" | sed "s/^/$vmm-$r: /" >&2
	elif ! grep -q CTL-FILLED "$log" || grep -q CTL-FAIL "$log"; then
		echo "bench: $vmm round $r did not finish; the end of its output:" >&2
		tr -d '\r' <"$log" | tail -n 15 >&2
	fi
}

touch "$out/runs.txt" "$out/errors"
for ((r = 1; r <= rounds; r++)); do
	for vmm in $vmms; do run_one "$vmm" "$r"; done
done
if [[ -s $out/errors ]]; then
	echo "bench: what failed requests said (first lines):" >&2
	head -n 10 "$out/errors" >&2
fi
echo
echo "bench: every figure, one per line (VMM METRIC VALUE):"
sed 's/^/control-run: /' "$out/runs.txt"

med() { awk -v w="$1" -v m="$2" '$1 == w && $2 == m { print $3 }' "$out/runs.txt" | median; }
ratio() { awk -v n="$1" -v q="$2" 'BEGIN { print (n != "-" && q + 0) ? sprintf("%.2f", n / q) : "-" }'; }
peer=qemu
[[ " $vmms " == *" qemu "* ]] || peer=${vmms##* }

echo
echo "Medians over $rounds rounds × $samples samples (latencies, ms, lower is better) or over" \
	"$rounds rounds (balloon); 1 GiB, 2 vCPU guests with a 64 MiB raw disk doing O_DIRECT dd;" \
	"$fill MiB dirtied, then ballooned to ${target}M. QEMU 7.2, -device virtio-balloon."
echo
printf '| metric |'
for v in $vmms; do printf ' %s |' "$v"; done
echo " nkvm ÷ $peer |"
printf '|---|'
for v in $vmms; do printf -- '---|'; done
echo '---|'
for m in pr_client pr_curl pr_raw pause_raw resume_raw stat_client stat_curl stat_raw info_raw \
	counters_raw start_client start_curl rss_peak_mib rss_before_mib rss_after_mib returned_mib \
	returned_share balloon_s; do
	case $m in
	pr_client) what="pause → resume, client processes (nkvm pause + resume; socat QMP stop + cont)" ;;
	pr_curl) what="pause → resume, curl PUT vm.pause + vm.resume" ;;
	pr_raw) what="pause → resume on the socket (ctl-rtt: HTTP vm.pause + vm.resume; QMP stop + cont)" ;;
	pause_raw) what="… of which pause (vm.pause; stop)" ;;
	resume_raw) what="… of which resume (vm.resume; cont)" ;;
	stat_client) what="stat, client process (nkvm stat; socat QMP query-status + query-blockstats)" ;;
	stat_curl) what="stat, curl GET vm.counters" ;;
	stat_raw) what="stat on the socket (ctl-rtt: vm.info + vm.counters; query-status + query-blockstats)" ;;
	info_raw) what="… of which vm.info; query-status" ;;
	counters_raw) what="… of which vm.counters; query-blockstats" ;;
	start_client) what="a client process that does nothing (nkvm version; socat -V)" ;;
	start_curl) what="curl --version" ;;
	rss_peak_mib) what="RSS peak, MiB (VmHWM, after the fill)" ;;
	rss_before_mib) what="RSS before ballooning, MiB" ;;
	rss_after_mib) what="RSS after ballooning, MiB" ;;
	returned_mib) what="RSS returned, MiB (peak − after)" ;;
	returned_share) what="share of the peak RSS returned ((peak − after) ÷ peak)" ;;
	balloon_s) what="seconds until the balloon reached the target" ;;
	esac
	printf '| %s |' "$what"
	for v in $vmms; do printf ' %s |' "$(med "$v" "$m")"; done
	echo " $(ratio "$(med nkvm "$m")" "$(med "$peer" "$m")") |"
	echo "control-median: $m$(for v in $vmms; do printf ' %s=%s' "$v" "$(med "$v" "$m")"; done)" \
		>>"$out/machine"
done
echo
cat "$out/machine"
# Issue 17's targets: pause → resume and stat answer in < 10 ms; nkvm returns at least QEMU's
# share of the ballooned memory.
for m in pr_client pr_raw pause_raw resume_raw stat_client stat_raw; do
	n=$(med nkvm "$m")
	echo "control-target: $m nkvm=$n ms < 10: $(awk -v n="$n" 'BEGIN { print (n != "-" && n < 10) ? "met" : "not met" }')"
done
n=$(med nkvm returned_share) q=$(med "$peer" returned_share)
echo "control-target: returned_share nkvm=$n $peer=$q nkvm >= $peer:" \
	"$(awk -v n="$n" -v q="$q" 'BEGIN { print (n != "-" && q != "-" && n >= q) ? "met" : "not met" }')"
