#!/bin/sh
# The integration suite: boots the real default guest with ./nkvm on a real /dev/kvm and checks
# what the guest sees. Runs on the host when its KVM can run a standard guest, else inside the
# nested test host (tests/integration/run decides). POSIX sh: the test host has only busybox.
#
# Each test prints "ok NAME" or "FAIL NAME" with what it saw; the last line is the summary.
# shellcheck disable=SC2016 # guest commands are single-quoted on purpose
NKVM=${NKVM:-./nkvm}
passed=0
failed=0
failures=""
tmp=${TMPDIR:-/tmp}/nkvm-it.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# run_guest OUT -- nkvm run arguments...: output (stdout+stderr, CRs stripped) to OUT, status in $rc.
# A guest still running after 300 s is stopped and run once more, saying so: inside the emulated
# test host a nested guest has been seen to stall for good now and then (1 boot in a few
# hundred) while the test host itself keeps going; a second stall fails the test. A guest that
# triple-faults fails its test at once: the test host's resets came from its emulated nested
# paging, which it no longer has (tests/nested/README.md, "Guest resets"), and on a real KVM a
# triple fault is nkvm's bug.
run_guest() {
	out=$1
	shift
	for try in 1 2; do
		start=$(date +%s)
		# -k: a monitor that ignored SIGTERM must not hold up the whole suite.
		timeout -k 10 300 "$NKVM" run "$@" </dev/null >"$out.raw" 2>&1
		rc=$?
		if [ $(($(date +%s) - start)) -ge 300 ] && [ "$try" -eq 1 ]; then
			echo "retry: the guest did not finish in 300 s (status $rc); running it once more"
		else
			break
		fi
	done
	tr -d '\r' <"$out.raw" >"$out"
}

pass() {
	passed=$((passed + 1))
	echo "ok $1"
}

fail() {
	failed=$((failed + 1))
	failures="$failures $1"
	echo "FAIL $1: $2"
	if [ -n "${3:-}" ] && [ -f "$3" ]; then
		# nkvm's own reports (a sandbox kill names the thread and call) may sit above the tail.
		[ "$(wc -l <"$3")" -le 30 ] || grep '^nkvm: ' "$3" | grep -v 'format probed' |
			sed 's/^/    | /' | head -n 10
		sed 's/^/    | /' "$3" | tail -n 30
	fi
}

# expect_line NAME FILE LINE: FILE has LINE exactly as one of its lines
has_line() {
	grep -qxF -- "$2" "$1"
}

test_command_output_and_status() {
	run_guest "$tmp/o" -- sh -c 'echo hello from the guest; exit 0'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "hello from the guest"; then
		pass command_output_and_status
	else
		fail command_output_and_status "status $rc" "$tmp/o"
	fi
}

test_command_output_is_clean() {
	# With the default guest, the command's output is all there is on stdout.
	timeout 300 "$NKVM" run -- echo only-this </dev/null >"$tmp/clean.raw" 2>"$tmp/clean.err"
	rc=$?
	tr -d '\r' <"$tmp/clean.raw" >"$tmp/clean"
	if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/clean")" = "only-this" ]; then
		pass command_output_is_clean
	else
		fail command_output_is_clean "status $rc, stdout differs" "$tmp/clean"
	fi
}

test_exit_status_propagates() {
	run_guest "$tmp/o" -- sh -c 'exit 7'
	if [ "$rc" -eq 7 ]; then pass exit_status_propagates; else fail exit_status_propagates "status $rc, want 7" "$tmp/o"; fi
}

test_missing_command_is_127() {
	run_guest "$tmp/o" -- no-such-command
	if [ "$rc" -eq 127 ] && grep -q "no-such-command" "$tmp/o"; then
		pass missing_command_is_127
	else
		fail missing_command_is_127 "status $rc, want 127" "$tmp/o"
	fi
}

test_arguments_survive_quoting() {
	run_guest "$tmp/o" -- sh -c 'printf "[%s]\n" "$@"' sh "a b" "it's" '$HOME' ""
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "[a b]" && has_line "$tmp/o" "[it's]" &&
		has_line "$tmp/o" '[$HOME]' && has_line "$tmp/o" "[]"; then
		pass arguments_survive_quoting
	else
		fail arguments_survive_quoting "status $rc" "$tmp/o"
	fi
}

test_nproc_matches_cpus() {
	for n in 1 2 4; do
		run_guest "$tmp/o" -c "$n" -- nproc
		if [ "$rc" -ne 0 ] || ! has_line "$tmp/o" "$n"; then
			fail "nproc_matches_cpus_$n" "status $rc, want nproc $n" "$tmp/o"
			return
		fi
	done
	pass nproc_matches_cpus
}

test_every_cpu_online() {
	run_guest "$tmp/o" -c 3 -- cat /sys/devices/system/cpu/online
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "0-2"; then
		pass every_cpu_online
	else
		fail every_cpu_online "status $rc, want 0-2" "$tmp/o"
	fi
}

# KVM emulates the LAPIC timer's TSC-deadline mode but leaves it for the VMM to announce.
test_tsc_deadline_timer() {
	run_guest "$tmp/o" -c 2 -- sh -c 'grep -c "^flags.* tsc_deadline_timer" /proc/cpuinfo'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" 2; then
		pass tsc_deadline_timer
	else
		fail tsc_deadline_timer "status $rc, want the flag on both CPUs" "$tmp/o"
	fi
}

# NKVM_STATS=1: the exits by reason and by port, the guest's output (UART) and its exit (0xf4),
# KVM's own count of every exit (KVM_GET_STATS_FD), and the monitor's private memory, which RAM
# the balloon handed back must not inflate (it read 46 MiB when it did) nor the shared libraries.
test_stats_report_exits_and_monitor_overhead() {
	export NKVM_STATS=1
	run_guest "$tmp/o" -- echo counted
	unset NKVM_STATS
	overhead=$(sed -n 's/^nkvm: stats: .* overhead_kib=\([0-9]*\) .*/\1/p' "$tmp/o")
	if [ "$rc" -eq 0 ] && grep -q "^nkvm: exit reasons: io=[1-9][0-9]* " "$tmp/o" &&
		grep "^nkvm: exit ports: " "$tmp/o" | grep -q " 0x3f8:out=[1-9]" &&
		grep "^nkvm: exit ports: " "$tmp/o" | grep -q " 0xf4:out=1\( \|$\)" &&
		grep -q "^nkvm: kvm exits: exits=[1-9][0-9]* .*halt_exits=" "$tmp/o" &&
		[ -n "$overhead" ] && [ "$overhead" -lt 8192 ]; then
		pass stats_report_exits_and_monitor_overhead
	else
		fail stats_report_exits_and_monitor_overhead \
			"status $rc, no counts by reason and port, or overhead '$overhead' KiB" "$tmp/o"
	fi
}

# MemTotal is RAM less what the kernel keeps for itself: between 75% and 100% of -m.
check_memtotal() {
	mib=$1
	run_guest "$tmp/o" -m "${mib}M" -- grep MemTotal /proc/meminfo
	kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' "$tmp/o")
	if [ "$rc" -ne 0 ] || [ -z "$kb" ]; then
		fail "memtotal_${mib}M" "status $rc, no MemTotal" "$tmp/o"
		return 1
	fi
	if [ "$kb" -gt $((mib * 1024)) ] || [ "$kb" -lt $((mib * 1024 * 3 / 4)) ]; then
		fail "memtotal_${mib}M" "MemTotal $kb kB for -m ${mib}M" "$tmp/o"
		return 1
	fi
}

test_memtotal_matches_mem() {
	check_memtotal 256 && check_memtotal 1024 && pass memtotal_matches_mem
}

test_memory_above_4g() {
	# More than 3 GiB: RAM continues above the PCI hole at 4 GiB.
	run_guest "$tmp/o" -m 3584M -- grep MemTotal /proc/meminfo
	kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' "$tmp/o")
	if [ "$rc" -eq 0 ] && [ -n "$kb" ] && [ "$kb" -gt $((3200 * 1024)) ]; then
		pass memory_above_4g
	else
		fail memory_above_4g "status $rc, MemTotal ${kb:-none} kB for 3584M" "$tmp/o"
	fi
}

test_params_reach_cmdline() {
	run_guest "$tmp/o" -p "nkvm.test=hello-42" -- cat /proc/cmdline
	if [ "$rc" -eq 0 ] && grep -q "nkvm.test=hello-42" "$tmp/o"; then
		pass params_reach_cmdline
	else
		fail params_reach_cmdline "status $rc" "$tmp/o"
	fi
}

test_kernel_version() {
	want=$(cat "${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/kernel-version" 2>/dev/null)
	run_guest "$tmp/o" -- uname -r
	if [ "$rc" -eq 0 ] && [ -n "$want" ] && has_line "$tmp/o" "$want"; then
		pass kernel_version
	else
		fail kernel_version "status $rc, want $want" "$tmp/o"
	fi
}

test_pci_host_bridge_found() {
	run_guest "$tmp/o" -- cat /sys/bus/pci/devices/0000:00:00.0/vendor /sys/bus/pci/devices/0000:00:00.0/class
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "0x1b36" && has_line "$tmp/o" "0x060000"; then
		pass pci_host_bridge_found
	else
		fail pci_host_bridge_found "status $rc" "$tmp/o"
	fi
}

test_reboot_ends_cleanly() {
	for how in "reboot" "reboot -f"; do
		run_guest "$tmp/o" -c 2 -- sh -c "$how; sleep 30; echo not-reached"
		if [ "$rc" -ne 0 ] || grep -q not-reached "$tmp/o"; then
			fail reboot_ends_cleanly "'$how': status $rc" "$tmp/o"
			return
		fi
	done
	pass reboot_ends_cleanly
}

test_poweroff_ends_cleanly() {
	for how in "poweroff" "poweroff -f"; do
		run_guest "$tmp/o" -c 2 -- sh -c "$how; sleep 30; echo not-reached"
		if [ "$rc" -ne 0 ] || grep -q not-reached "$tmp/o"; then
			fail poweroff_ends_cleanly "'$how': status $rc" "$tmp/o"
			return
		fi
	done
	pass poweroff_ends_cleanly
}

test_timers_tick() {
	# sleep needs working timer interrupts; a broken PIT/LAPIC route hangs here.
	run_guest "$tmp/o" -- sh -c 'a=$(cut -d. -f1 /proc/uptime); sleep 2; b=$(cut -d. -f1 /proc/uptime); echo "slept $((b - a))"'
	if [ "$rc" -eq 0 ] && (has_line "$tmp/o" "slept 2" || has_line "$tmp/o" "slept 3"); then
		pass timers_tick
	else
		fail timers_tick "status $rc" "$tmp/o"
	fi
}

test_stdin_reaches_guest() {
	# Typed before the guest is ready: nkvm holds it until the guest's UART listens. A guest
	# stalled for 300 s runs once more, saying so, as in run_guest (stdin here is a pipe).
	for try in 1 2; do
		start=$(date +%s)
		printf 'line-from-host\n' | timeout 300 "$NKVM" run -- sh -c 'read l; echo "got $l"' \
			>"$tmp/o.raw" 2>&1
		rc=$?
		[ $(($(date +%s) - start)) -ge 300 ] && [ "$try" -eq 1 ] || break
		echo "retry: the guest did not finish in 300 s (status $rc); running it once more"
	done
	tr -d '\r' <"$tmp/o.raw" >"$tmp/o"
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "got line-from-host"; then
		pass stdin_reaches_guest
	else
		fail stdin_reaches_guest "status $rc" "$tmp/o"
	fi
}

test_sigterm_stops_nkvm() {
	"$NKVM" run -- sleep 600 </dev/null >"$tmp/o" 2>&1 &
	pid=$!
	sleep 3
	kill -TERM "$pid"
	wait "$pid"
	rc=$?
	if [ "$rc" -eq 143 ]; then pass sigterm_stops_nkvm; else fail sigterm_stops_nkvm "status $rc, want 143" "$tmp/o"; fi
}

# On a terminal (a pty from script(1)): the interactive shell, and Ctrl-A x.
test_interactive_shell_on_terminal() {
	if ! command -v script >/dev/null; then
		fail interactive_shell_on_terminal "script(1) not available"
		return
	fi
	# Typed once the shell's prompt shows (input typed earlier can be eaten by the shell's
	# start-up terminal query). The feeder stays open a while, since an end of input on the
	# pty would end the shell before it ran the lines.
	: >"$tmp/o.raw"
	# shellcheck disable=SC2094 # the feeder reads what script writes: that is the point
	(n=0; while [ $n -lt 120 ] && ! grep -q '# ' "$tmp/o.raw"; do sleep 1; n=$((n + 1)); done
	 sleep 1; printf 'echo hi-$((6 * 7))\nexit 5\n'; sleep 15) |
		timeout 300 script -qec "$NKVM run" /dev/null >"$tmp/o.raw" 2>&1
	rc=$?
	tr -d '\r' <"$tmp/o.raw" >"$tmp/o"
	if [ "$rc" -eq 5 ] && has_line "$tmp/o" "hi-42"; then
		pass interactive_shell_on_terminal
	else
		fail interactive_shell_on_terminal "status $rc, want 5 and hi-42" "$tmp/o"
	fi
}

test_ctrl_a_x_quits() {
	if ! command -v script >/dev/null; then
		fail ctrl_a_x_quits "script(1) not available"
		return
	fi
	(sleep 2; printf '\001x'; sleep 5) |
		timeout 300 script -qec "$NKVM run -- sleep 600" /dev/null >"$tmp/o.raw" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then pass ctrl_a_x_quits; else fail ctrl_a_x_quits "status $rc, want 0" "$tmp/o.raw"; fi
}

test_terminal_restored_after_exit() {
	# nkvm puts the terminal in raw mode while the guest runs; it must come back cooked.
	(sleep 20) | timeout 300 script -qec "$NKVM run -- true; stty -a" /dev/null >"$tmp/o.raw" 2>&1
	rc=$?
	tr -d '\r' <"$tmp/o.raw" >"$tmp/o"
	if [ "$rc" -eq 0 ] && grep -q -- " icanon" "$tmp/o" && grep -q -- " echo " "$tmp/o" &&
		! grep -q -- "-icanon" "$tmp/o"; then
		pass terminal_restored_after_exit
	else
		fail terminal_restored_after_exit "status $rc, terminal still raw?" "$tmp/o"
	fi
}

# --- virtio-blk, virtio-rng ---------------------------------------------------------------

test_blk_size_serial_and_queues() {
	truncate -s 64M "$tmp/a.img"
	run_guest "$tmp/o" -c 4 -d "$tmp/a.img,serial=NKVM-SER-123" -- \
		sh -c 'cat /sys/block/vda/size /sys/block/vda/serial; echo; ls /sys/block/vda/mq | wc -l'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" 131072 && grep -q "^NKVM-SER-123" "$tmp/o" &&
		has_line "$tmp/o" 4; then
		pass blk_size_serial_and_queues
	else
		fail blk_size_serial_and_queues "status $rc, want 131072 sectors, the serial, 4 queues" "$tmp/o"
	fi
}

test_blk_data_both_ways() {
	truncate -s 64M "$tmp/a.img"
	printf 'host-wrote-this' | dd of="$tmp/a.img" bs=1 seek=1048576 conv=notrunc 2>/dev/null
	run_guest "$tmp/o" -d "$tmp/a.img" -- sh -c \
		'dd if=/dev/vda bs=1 skip=1048576 count=15 2>/dev/null; echo;
		 printf guest-wrote-this | dd of=/dev/vda bs=512 seek=8192 conv=fsync 2>/dev/null'
	got=$(dd if="$tmp/a.img" bs=512 skip=8192 count=1 2>/dev/null | head -c 16)
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" host-wrote-this && [ "$got" = guest-wrote-this ]; then
		pass blk_data_both_ways
	else
		fail blk_data_both_ways "status $rc, host file has '$got'" "$tmp/o"
	fi
}

test_blk_readonly_refuses_writes() {
	truncate -s 16M "$tmp/ro.img"
	printf 'keep' | dd of="$tmp/ro.img" bs=1 conv=notrunc 2>/dev/null
	before=$(md5sum <"$tmp/ro.img")
	run_guest "$tmp/o" -d "$tmp/ro.img,ro" -- sh -c \
		'cat /sys/block/vda/ro; if echo x | dd of=/dev/vda conv=fsync 2>/dev/null; then echo WROTE; fi'
	after=$(md5sum <"$tmp/ro.img")
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" 1 && ! grep -q WROTE "$tmp/o" && [ "$before" = "$after" ]; then
		pass blk_readonly_refuses_writes
	else
		fail blk_readonly_refuses_writes "status $rc, image changed or write accepted" "$tmp/o"
	fi
}

test_blk_flush_reaches_file() {
	if ! command -v strace >/dev/null; then
		fail blk_flush_reaches_file "strace not available"
		return
	fi
	truncate -s 16M "$tmp/f.img"
	timeout 300 strace -f -qq -e trace=fdatasync -o "$tmp/strace" "$NKVM" run -d "$tmp/f.img" -- \
		sh -c 'echo data | dd of=/dev/vda conv=fsync 2>/dev/null' </dev/null >"$tmp/o" 2>&1
	rc=$?
	n=$(grep -c 'fdatasync(' "$tmp/strace")
	if [ "$rc" -eq 0 ] && [ "$n" -ge 1 ]; then
		pass blk_flush_reaches_file
	else
		fail blk_flush_reaches_file "status $rc, $n fdatasync calls" "$tmp/o"
	fi
}

test_blk_discard_punches_holes() {
	dd if=/dev/urandom of="$tmp/d.img" bs=1M count=32 2>/dev/null
	before=$(du -k "$tmp/d.img" | cut -f1)
	run_guest "$tmp/o" -d "$tmp/d.img" -- blkdiscard /dev/vda
	after=$(du -k "$tmp/d.img" | cut -f1)
	zero=$(dd if="$tmp/d.img" bs=1M count=1 2>/dev/null | tr -d '\0' | wc -c)
	if [ "$rc" -eq 0 ] && [ "$after" -lt $((before / 2)) ] && [ "$zero" -eq 0 ]; then
		pass blk_discard_punches_holes
	else
		fail blk_discard_punches_holes "status $rc, du ${before}K -> ${after}K, $zero non-zero bytes" "$tmp/o"
	fi
}

test_blk_two_disks() {
	truncate -s 8M "$tmp/one.img"
	truncate -s 24M "$tmp/two.img"
	run_guest "$tmp/o" -d "$tmp/one.img" -d "$tmp/two.img" -- cat /sys/block/vda/size /sys/block/vdb/size
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" 16384 && has_line "$tmp/o" 49152; then
		pass blk_two_disks
	else
		fail blk_two_disks "status $rc" "$tmp/o"
	fi
}

test_blk_image_locked_by_another_nkvm() {
	truncate -s 8M "$tmp/l.img"
	"$NKVM" run -d "$tmp/l.img" -- sleep 600 </dev/null >"$tmp/first" 2>&1 &
	first=$!
	# The lock is taken before the guest boots: a second or two is plenty.
	sleep 2
	expect_error blk_image_locked_by_another_nkvm "in use" -d "$tmp/l.img" -- true
	kill -TERM "$first"
	wait "$first"
}

test_blk_bad_input() {
	mkdir -p "$tmp/adir"
	expect_error blk_error_missing_image "No such file" -d "$tmp/nope.img" -- true
	expect_error blk_error_directory "directory" -d "$tmp/adir" -- true
	truncate -s 8M "$tmp/x.img"
	expect_error blk_error_unknown_option "unknown disk option" -d "$tmp/x.img,bogus=1" -- true
}

test_rng_output_does_not_repeat() {
	run_guest "$tmp/o" --rng -- sh -c \
		'cat /sys/devices/virtual/misc/hw_random/rng_current;
		 a=$(head -c 64 /dev/hwrng | md5sum); b=$(head -c 64 /dev/hwrng | md5sum);
		 [ "$a" != "$b" ] && echo DIFFERENT; head -c 65536 /dev/hwrng | wc -c'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" virtio_rng.0 && has_line "$tmp/o" DIFFERENT &&
		has_line "$tmp/o" 65536; then
		pass rng_output_does_not_repeat
	else
		fail rng_output_does_not_repeat "status $rc" "$tmp/o"
	fi
}

test_virtio_intx_fallback() {
	# pci=nomsi: the drivers cannot enable MSI-X, so completions come through INTx.
	truncate -s 16M "$tmp/i.img"
	printf 'intx-pattern' | dd of="$tmp/i.img" bs=1 conv=notrunc 2>/dev/null
	run_guest "$tmp/o" -p pci=nomsi --rng -d "$tmp/i.img" -- sh -c \
		'dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 12; echo;
		 head -c 4096 /dev/hwrng | wc -c; echo "msi=$(grep -c -i msi /proc/interrupts)"'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" intx-pattern && has_line "$tmp/o" 4096 && has_line "$tmp/o" msi=0; then
		pass virtio_intx_fallback
	else
		fail virtio_intx_fallback "status $rc" "$tmp/o"
	fi
}

test_virtio_driver_rebind() {
	# Unbinding resets the device; binding again must find no stale queue state.
	truncate -s 16M "$tmp/r.img"
	printf 'rebind-pattern' | dd of="$tmp/r.img" bs=1 conv=notrunc 2>/dev/null
	run_guest "$tmp/o" -d "$tmp/r.img" -- sh -c \
		'd=$(basename "$(readlink -f /sys/block/vda/device/..)");
		 echo $d > /sys/bus/pci/drivers/virtio-pci/unbind; [ -e /dev/vda ] || echo GONE;
		 echo $d > /sys/bus/pci/drivers/virtio-pci/bind; sleep 1;
		 dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 14; echo'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" GONE && has_line "$tmp/o" rebind-pattern; then
		pass virtio_driver_rebind
	else
		fail virtio_driver_rebind "status $rc" "$tmp/o"
	fi
}

test_blk_ext4_made_in_guest_checks_clean_on_host() {
	if ! command -v e2fsck >/dev/null; then
		fail blk_ext4_made_in_guest_checks_clean_on_host "e2fsck not available"
		return
	fi
	truncate -s 128M "$tmp/fs.img"
	run_guest "$tmp/o" -d "$tmp/fs.img" -- sh -c \
		'mkfs.ext4 -q /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt &&
		 i=0; while [ $i -lt 50 ]; do head -c 65536 /dev/urandom >/mnt/f$i; i=$((i + 1)); done;
		 md5sum /mnt/f7 | cut -d" " -f1; umount /mnt && echo UNMOUNTED'
	e2fsck -fn "$tmp/fs.img" >"$tmp/fsck" 2>&1
	frc=$?
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" UNMOUNTED && [ "$frc" -eq 0 ]; then
		pass blk_ext4_made_in_guest_checks_clean_on_host
	else
		cat "$tmp/fsck" >>"$tmp/o"
		fail blk_ext4_made_in_guest_checks_clean_on_host "status $rc, e2fsck $frc" "$tmp/o"
	fi
}

test_blk_fio_verify_one_queue_per_vcpu() {
	full="${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/initrd-full.cpio"
	if [ ! -r "$full" ]; then
		fail blk_fio_verify_one_queue_per_vcpu "no $full (nkvm setup builds it when fio is installed)"
		return
	fi
	truncate -s 64M "$tmp/fio.img"
	# 4 vCPUs, 4 queues, 4 writers pinned one per CPU, each verifying its own region.
	run_guest "$tmp/o" -c 4 -m 768M -i "$full" -d "$tmp/fio.img" -- sh -c \
		'ls /sys/block/vda/mq | wc -l;
		 fio --name=v --filename=/dev/vda --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
		     --iodepth=8 --numjobs=4 --cpus_allowed_policy=split --cpus_allowed=0-3 --size=2M \
		     --offset_increment=8M --verify=crc32c --verify_fatal=1 --group_reporting \
		     --output-format=terse >/tmp/fio.out && echo FIO-OK || { tail -5 /tmp/fio.out; echo FIO-FAILED; }'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" 4 && has_line "$tmp/o" FIO-OK; then
		pass blk_fio_verify_one_queue_per_vcpu
	else
		fail blk_fio_verify_one_queue_per_vcpu "status $rc" "$tmp/o"
	fi
}

test_blk_root_on_disk() {
	# First boot: build a root file system on the disk (busybox, a marker). Second boot: use
	# it as root= and run the command there, writing to it. Then check the image on the host.
	truncate -s 64M "$tmp/root.img"
	run_guest "$tmp/o" -d "$tmp/root.img" -- sh -c \
		'mkfs.ext4 -q /dev/vda && mkdir -p /mnt && mount /dev/vda /mnt &&
		 mkdir -p /mnt/bin /mnt/etc /mnt/dev /mnt/proc /mnt/sys /mnt/tmp /mnt/run &&
		 cp /bin/busybox /mnt/bin/ && ln -s busybox /mnt/bin/sh && ln -s busybox /mnt/bin/cat &&
		 ln -s busybox /mnt/bin/touch && echo root-from-disk >/mnt/etc/marker && umount /mnt &&
		 echo PREPARED'
	if [ "$rc" -ne 0 ] || ! has_line "$tmp/o" PREPARED; then
		fail blk_root_on_disk "preparing the root image: status $rc" "$tmp/o"
		return
	fi
	run_guest "$tmp/o" -d "$tmp/root.img" -p "root=/dev/vda rw" -- \
		sh -c 'cat /etc/marker; touch /written-in-root; echo DONE'
	if [ "$rc" -ne 0 ] || ! has_line "$tmp/o" root-from-disk || ! has_line "$tmp/o" DONE; then
		fail blk_root_on_disk "booting root=/dev/vda: status $rc" "$tmp/o"
		return
	fi
	if command -v e2fsck >/dev/null && ! e2fsck -fn "$tmp/root.img" >"$tmp/fsck" 2>&1; then
		fail blk_root_on_disk "e2fsck found errors after the root=/dev/vda boot" "$tmp/fsck"
		return
	fi
	run_guest "$tmp/o" -d "$tmp/root.img" -p root=/dev/vdz -- true
	if [ "$rc" -eq 1 ] && grep -q "nkvm-init: root=/dev/vdz" "$tmp/o"; then
		pass blk_root_on_disk
	else
		fail blk_root_on_disk "root=/dev/vdz: status $rc, want 1 and a one-line reason" "$tmp/o"
	fi
}

test_console_on_hvc0() {
	# hvc0 is the preferred console ("C" in /proc/consoles), and bytes written to it reach us.
	# Both lines go straight to /dev/hvc0 from one process: the command's stdout is relayed
	# by init, and a line on it could be cut by one written to hvc0 directly meanwhile.
	run_guest "$tmp/o" --console virtio -- sh -c \
		'{ grep -q "^hvc0 .*(.C" /proc/consoles && echo HVC0-IS-CONSOLE; echo via-hvc0; } \
		   >/dev/hvc0'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" via-hvc0 && has_line "$tmp/o" HVC0-IS-CONSOLE; then
		pass console_on_hvc0
	else
		fail console_on_hvc0 "status $rc" "$tmp/o"
	fi
}

# --- the lean initramfs: each device's modules only with the device (issue 20) ---------------
# The guest's loaded modules (a name a line) and whether it has socat and mkfs.ext4.
lean_probe='cut -d" " -f1 /proc/modules; for t in socat mkfs.ext4; do command -v $t >/dev/null && echo "tool-$t"; done; true'

# lean_has FILE NAME...: each NAME is a line of FILE; lean_lacks: none is.
lean_has() {
	f=$1
	shift
	for m; do has_line "$f" "$m" || return 1; done
}
lean_lacks() {
	f=$1
	shift
	for m; do ! has_line "$f" "$m" || return 1; done
}

# No disk: no virtio_blk (nor any other device's driver, nor the disk's and vsock's tools);
# with -d: virtio_blk and mkfs.ext4, still no NIC driver; the balloon's by default.
test_lean_disk_driver_only_with_a_disk() {
	run_guest "$tmp/lean1" --no-balloon -- sh -c "$lean_probe"
	rc1=$rc
	truncate -s 16M "$tmp/lean.img"
	run_guest "$tmp/lean2" -d "$tmp/lean.img" -- sh -c "$lean_probe"
	if [ "$rc1" -eq 0 ] && lean_has "$tmp/lean1" virtio_pci &&
		lean_lacks "$tmp/lean1" virtio_blk virtio_net virtiofs vmw_vsock_virtio_transport \
			virtio_balloon virtio_console virtio_rng tool-socat tool-mkfs.ext4 &&
		[ "$rc" -eq 0 ] && lean_has "$tmp/lean2" virtio_blk virtio_balloon tool-mkfs.ext4 &&
		lean_lacks "$tmp/lean2" virtio_net virtiofs tool-socat; then
		pass lean_disk_driver_only_with_a_disk
	else
		cat "$tmp/lean2" >>"$tmp/lean1"
		fail lean_disk_driver_only_with_a_disk "status $rc1/$rc" "$tmp/lean1"
	fi
}

# -n, --share, --vsock, --rng and --console virtio: each gets its driver (and vsock socat).
test_lean_each_device_gets_its_modules() {
	mkdir -p "$tmp/lean-share"
	run_guest "$tmp/lean3" -n user --share "$tmp/lean-share,at=/lean" --vsock 11 --rng \
		--console virtio -- sh -c "$lean_probe"
	if [ "$rc" -eq 0 ] && lean_has "$tmp/lean3" virtio_net virtiofs vmw_vsock_virtio_transport \
		virtio_rng virtio_console virtio_balloon tool-socat &&
		lean_lacks "$tmp/lean3" virtio_blk tool-mkfs.ext4; then
		pass lean_each_device_gets_its_modules
	else
		fail lean_each_device_gets_its_modules "status $rc" "$tmp/lean3"
	fi
}

# One line on stderr starting "nkvm:", a status that is not 0 and not a signal, no stdout.
expect_error() {
	name=$1
	want=$2
	shift 2
	timeout 60 "$NKVM" run "$@" </dev/null >"$tmp/e.out" 2>"$tmp/e.err"
	rc=$?
	lines=$(wc -l <"$tmp/e.err")
	if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && [ "$lines" -eq 1 ] &&
		grep -qi "^nkvm: .*$want" "$tmp/e.err" && [ ! -s "$tmp/e.out" ]; then
		pass "$name"
	else
		fail "$name" "status $rc, $lines stderr lines, want one matching '$want'" "$tmp/e.err"
	fi
}

test_bad_input() {
	kernel="${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz"
	head -c 1048576 "$kernel" >"$tmp/truncated"
	printf 'not a kernel at all\n' >"$tmp/text"
	expect_error error_missing_kernel "No such file" -k "$tmp/does-not-exist" -- true
	expect_error error_not_a_bzimage "not a bootable kernel" -k "$tmp/text" -- true
	expect_error error_truncated_bzimage "truncated" -k "$tmp/truncated" -- true
	expect_error error_kernel_is_directory "kernel" -k "$tmp" -- true
	expect_error error_missing_initrd "initrd" -i "$tmp/does-not-exist" -- true
	expect_error error_mem_zero "-m 0" -m 0 -- true
	expect_error error_mem_beyond_host "more than this host" -m 1T -- true
	expect_error error_cpus_zero "-c 0" -c 0 -- true
	expect_error error_cpus_1000 "-c 1000" -c 1000 -- true
	expect_error error_unknown_option "unknown option" --frobnicate -- true
}

# The boot loader type the guest's kernel was given (boot_params.hdr.type_of_loader, at 0x210 of
# /sys/kernel/boot_params/data): ff from nkvm's bzImage loader; Linux's PVH entry sets its own.
LOADER_TYPE='od -An -tx1 -j 528 -N 1 /sys/kernel/boot_params/data | tr -d " "'

# What the bzImage tests check, on the vmlinux `nkvm setup` extracted, booted through PVH: 2 vCPUs
# in /proc/cpuinfo, -m in /proc/meminfo, -p in /proc/cmdline, the initrd's init running the
# command (from /etc/nkvm/cmd, in the initrd nkvm extends), and its exit status.
test_pvh_vmlinux_smp_memory_cmdline_initrd_status() {
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/nkvm"
	if [ ! -r "$cache/vmlinux" ]; then
		fail pvh_vmlinux_smp_memory_cmdline_initrd_status "no $cache/vmlinux (nkvm setup makes it)"
		return
	fi
	run_guest "$tmp/o" -k "$cache/vmlinux" -i "$cache/initrd.cpio" -c 2 -m 512M -p nkvm.pvh=yes -- \
		sh -c 'echo cpus=$(grep -c ^processor /proc/cpuinfo); grep MemTotal /proc/meminfo
			cat /proc/cmdline; echo loader=$('"$LOADER_TYPE"'); exit 5'
	kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' "$tmp/o")
	if [ "$rc" -ne 5 ]; then
		fail pvh_vmlinux_smp_memory_cmdline_initrd_status "status $rc, want 5" "$tmp/o"
	elif ! has_line "$tmp/o" "cpus=2"; then
		fail pvh_vmlinux_smp_memory_cmdline_initrd_status "want 2 CPUs in /proc/cpuinfo" "$tmp/o"
	elif [ -z "$kb" ] || [ "$kb" -gt $((512 * 1024)) ] || [ "$kb" -lt $((384 * 1024)) ]; then
		fail pvh_vmlinux_smp_memory_cmdline_initrd_status "MemTotal ${kb:-none} kB for 512M" "$tmp/o"
	elif ! grep -q "nkvm.pvh=yes" "$tmp/o"; then
		fail pvh_vmlinux_smp_memory_cmdline_initrd_status "-p not on /proc/cmdline" "$tmp/o"
	elif ! grep -q '^loader=' "$tmp/o" || has_line "$tmp/o" "loader=ff"; then
		fail pvh_vmlinux_smp_memory_cmdline_initrd_status "not booted through PVH" "$tmp/o"
	else
		pass pvh_vmlinux_smp_memory_cmdline_initrd_status
	fi
}

# -k with the bzImage still boots it the bzImage way (nkvm's loader type, ff).
test_bzimage_with_k_boots_as_bzimage() {
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/nkvm"
	run_guest "$tmp/o" -k "$cache/vmlinuz" -i "$cache/initrd.cpio" -c 2 -- \
		sh -c 'echo loader=$('"$LOADER_TYPE"'); nproc'
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "loader=ff" && has_line "$tmp/o" "2"; then
		pass bzimage_with_k_boots_as_bzimage
	else
		fail bzimage_with_k_boots_as_bzimage "status $rc, want loader=ff and nproc 2" "$tmp/o"
	fi
}

# Malformed ELF kernels: one line each, no guest.
test_pvh_bad_elf_kernels() {
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/nkvm"
	head -c 4194304 "$cache/vmlinux" >"$tmp/vmlinux-cut"
	head -c 40 "$cache/vmlinux" >"$tmp/vmlinux-tiny"
	# A static executable without the note (busybox sh's `command -v` names the applet only).
	bb=/usr/bin/busybox
	[ -f "$bb" ] || bb=/bin/busybox
	expect_error error_pvh_no_note "no XEN_ELFNOTE_PHYS32_ENTRY note" -k "$bb" -- true
	expect_error error_pvh_truncated "truncated: PT_LOAD segment 0 runs past the end of the file" \
		-k "$tmp/vmlinux-cut" -- true
	expect_error error_pvh_tiny "truncated: file shorter than an ELF header" -k "$tmp/vmlinux-tiny" -- true
	expect_error error_pvh_outside_ram "is outside guest RAM" -k "$cache/vmlinux" -m 32M -- true
}

# need TOOL NAME: fails test NAME when TOOL is missing; the runner copies them into the test host.
need() {
	command -v "$1" >/dev/null && return 0
	fail "$2" "$1 not available"
	return 1
}

test_qcow2_ext4_in_guest_checks_clean() {
	need qemu-img qcow2_ext4_in_guest_checks_clean || return
	need e2fsck qcow2_ext4_in_guest_checks_clean || return
	qemu-img create -q -f qcow2 "$tmp/fs.qcow2" 128M
	# Files written and one removed, so the image sees allocation, overwrite and free space.
	run_guest "$tmp/o" -d "$tmp/fs.qcow2" -- sh -c \
		'mkfs.ext4 -q /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt &&
		 i=0; while [ $i -lt 40 ]; do head -c 65536 /dev/urandom >/mnt/f$i; i=$((i + 1)); done;
		 rm /mnt/f3; sync; head -c 100000 /dev/urandom >/mnt/f5; umount /mnt && echo UNMOUNTED'
	qemu-img check "$tmp/fs.qcow2" >"$tmp/chk" 2>&1
	crc=$?
	qemu-img convert -O raw "$tmp/fs.qcow2" "$tmp/fs.raw" && e2fsck -fn "$tmp/fs.raw" >>"$tmp/chk" 2>&1
	frc=$?
	rm -f "$tmp/fs.raw" "$tmp/fs.qcow2"
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" UNMOUNTED && [ "$crc" -eq 0 ] && [ "$frc" -eq 0 ]; then
		pass qcow2_ext4_in_guest_checks_clean
	else
		cat "$tmp/chk" >>"$tmp/o"
		fail qcow2_ext4_in_guest_checks_clean "status $rc, qemu-img check $crc, e2fsck $frc" "$tmp/o"
	fi
}

test_qcow2_overlay_on_raw_base() {
	need qemu-img qcow2_overlay_on_raw_base || return
	mkdir -p "$tmp/chain"
	truncate -s 32M "$tmp/chain/base.raw"
	printf 'base-data' | dd of="$tmp/chain/base.raw" bs=1 seek=1048576 conv=notrunc 2>/dev/null
	# A relative backing path: resolved against the overlay's directory, not ours.
	(cd "$tmp/chain" && qemu-img create -q -f qcow2 -b base.raw -F raw overlay.qcow2)
	before=$(md5sum <"$tmp/chain/base.raw")
	# One byte inside the base's cluster (copy-on-write keeps its neighbours) and a new cluster.
	run_guest "$tmp/o" -d "$tmp/chain/overlay.qcow2" -- sh -c \
		'dd if=/dev/vda bs=1 skip=1048576 count=9 2>/dev/null; echo;
		 printf X | dd of=/dev/vda bs=1 seek=1048580 conv=notrunc,fsync 2>/dev/null;
		 printf overlay-data | dd of=/dev/vda bs=512 seek=8192 conv=fsync 2>/dev/null && echo WROTE;
		 printf no-flush | dd of=/dev/vda bs=512 seek=16384 2>/dev/null'
	after=$(md5sum <"$tmp/chain/base.raw")
	qemu-img check "$tmp/chain/overlay.qcow2" >"$tmp/chk" 2>&1
	crc=$?
	qemu-img convert -O raw "$tmp/chain/overlay.qcow2" "$tmp/chain/flat.raw"
	got1=$(dd if="$tmp/chain/flat.raw" bs=1 skip=1048576 count=9 2>/dev/null)
	got2=$(dd if="$tmp/chain/flat.raw" bs=512 skip=8192 count=1 2>/dev/null | head -c 12)
	# Written without a flush: nkvm writes the qcow2 metadata back when the guest stops.
	got3=$(dd if="$tmp/chain/flat.raw" bs=512 skip=16384 count=1 2>/dev/null | head -c 8)
	rm -rf "$tmp/chain"
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" base-data && has_line "$tmp/o" WROTE &&
		[ "$before" = "$after" ] && [ "$crc" -eq 0 ] && [ "$got1" = baseXdata ] &&
		[ "$got2" = overlay-data ] && [ "$got3" = no-flush ]; then
		pass qcow2_overlay_on_raw_base
	else
		cat "$tmp/chk" >>"$tmp/o"
		fail qcow2_overlay_on_raw_base \
			"status $rc, check $crc, base changed: $([ "$before" = "$after" ] && echo no || echo yes), read '$got1' '$got2' '$got3'" \
			"$tmp/o"
	fi
}

# An ext4 made and filled on a raw base, then grown through a qcow2 overlay: fsck inside the
# guest and on the host; the base is never written.
test_qcow2_overlay_fs_over_populated_base() {
	need qemu-img qcow2_overlay_fs_over_populated_base || return
	need e2fsck qcow2_overlay_fs_over_populated_base || return
	mkdir -p "$tmp/pop"
	truncate -s 64M "$tmp/pop/base.raw"
	run_guest "$tmp/o" -d "$tmp/pop/base.raw" -- sh -c \
		'mkfs.ext4 -q /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt &&
		 i=0; while [ $i -lt 20 ]; do head -c 32768 /dev/urandom >/mnt/base$i; i=$((i + 1)); done;
		 md5sum /mnt/base7 >/mnt/base7.md5; umount /mnt && echo POPULATED'
	if [ "$rc" -ne 0 ] || ! has_line "$tmp/o" POPULATED; then
		fail qcow2_overlay_fs_over_populated_base "populating the base: status $rc" "$tmp/o"
		return
	fi
	(cd "$tmp/pop" && qemu-img create -q -f qcow2 -b base.raw -F raw overlay.qcow2)
	before=$(md5sum <"$tmp/pop/base.raw")
	run_guest "$tmp/o" -d "$tmp/pop/overlay.qcow2" -- sh -c \
		'mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && cd /mnt && md5sum -c base7.md5 &&
		 i=0; while [ $i -lt 20 ]; do head -c 49152 /dev/urandom >/mnt/over$i; i=$((i + 1)); done;
		 rm /mnt/base3 && cd / && umount /mnt && e2fsck -fn /dev/vda >/dev/null 2>&1 &&
		 echo GUEST-FSCK-CLEAN'
	after=$(md5sum <"$tmp/pop/base.raw")
	qemu-img check "$tmp/pop/overlay.qcow2" >"$tmp/chk" 2>&1
	crc=$?
	qemu-img convert -O raw "$tmp/pop/overlay.qcow2" "$tmp/pop/flat.raw" &&
		e2fsck -fn "$tmp/pop/flat.raw" >>"$tmp/chk" 2>&1
	frc=$?
	rm -rf "$tmp/pop"
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" GUEST-FSCK-CLEAN && [ "$before" = "$after" ] &&
		[ "$crc" -eq 0 ] && [ "$frc" -eq 0 ]; then
		pass qcow2_overlay_fs_over_populated_base
	else
		cat "$tmp/chk" >>"$tmp/o"
		fail qcow2_overlay_fs_over_populated_base "status $rc, check $crc, host e2fsck $frc" "$tmp/o"
	fi
}

# Every engine under every format: a verified random-write pass, then a discard of it all. The
# last two disks are threads with cache=none at depth 1, where the queue's thread performs each
# request itself (blk_may_wait).
test_engines_verify_and_discard() {
	need qemu-img engines_verify_and_discard || return
	full="${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/initrd-full.cpio"
	[ -r "$full" ] || { fail engines_verify_and_discard "no $full"; return; }
	set --
	for e in threads aio io_uring threads-direct; do
		truncate -s 32M "$tmp/$e.raw"
		qemu-img create -q -f qcow2 "$tmp/$e.qcow2" 32M
		# Native AIO is asynchronous only with O_DIRECT (buffered, nkvm falls back to threads).
		o=engine=${e%-direct}
		[ $e = aio ] || [ $e = threads-direct ] && o=$o,cache=none
		set -- "$@" -d "$tmp/$e.raw,$o" -d "$tmp/$e.qcow2,$o"
	done
	run_guest "$tmp/o" -c 2 -m 512M -i "$full" "$@" -- sh -c \
		'for d in vda vdb vdc vdd vde vdf vdg vdh; do
		   qd=16; case $d in vdg|vdh) qd=1;; esac
		   fio --name=$d --filename=/dev/$d --ioengine=libaio --direct=1 --rw=randwrite \
		       --bs=4k --iodepth=$qd --size=4M --verify=crc32c --verify_fatal=1 \
		       --output-format=terse >/tmp/fio.out && echo $d-VERIFIED ||
		       tail -3 /tmp/fio.out;
		   blkdiscard /dev/$d && echo $d-DISCARDED;
		 done'
	bad=""
	for d in vda vdb vdc vdd vde vdf vdg vdh; do
		has_line "$tmp/o" $d-VERIFIED || bad="$bad $d-verify"
		has_line "$tmp/o" $d-DISCARDED || bad="$bad $d-discard"
	done
	for e in threads aio io_uring threads-direct; do
		qemu-img check "$tmp/$e.qcow2" >>"$tmp/o" 2>&1 || bad="$bad $e.qcow2-check"
		for f in "$tmp/$e.raw" "$tmp/$e.qcow2"; do
			# 4M were written; after the discard at most the qcow2 metadata remains.
			[ "$(du -k "$f" | cut -f1)" -le 1024 ] || bad="$bad $(basename "$f")-not-punched"
		done
	done
	grep -q unavailable "$tmp/o" && bad="$bad engine-fell-back"
	if [ "$rc" -eq 0 ] && [ -z "$bad" ]; then
		pass engines_verify_and_discard
	else
		fail engines_verify_and_discard "status $rc:$bad" "$tmp/o"
	fi
}

# A full host file system reaches the guest as an I/O error of that disk only, on every engine.
test_enospc_reaches_guest_as_ioerr() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "skip enospc_reaches_guest_as_ioerr: needs root to mount small file systems"
		return
	fi
	need mkfs.ext4 enospc_reaches_guest_as_ioerr || return
	# A 16M disk on an 8M ext4 each (ext4, not tmpfs: aio needs O_DIRECT).
	set --
	for e in threads aio io_uring; do
		mkdir -p "$tmp/small-$e"
		truncate -s 8M "$tmp/small-$e.fs"
		if ! mkfs.ext4 -q "$tmp/small-$e.fs" || ! mount -o loop "$tmp/small-$e.fs" "$tmp/small-$e"; then
			fail enospc_reaches_guest_as_ioerr "cannot make and mount a small ext4"
			return
		fi
		truncate -s 16M "$tmp/small-$e/disk.img"
		set -- "$@" -d "$tmp/small-$e/disk.img,engine=$e,cache=none"
	done
	truncate -s 16M "$tmp/healthy.img"
	run_guest "$tmp/o" "$@" -d "$tmp/healthy.img" -- sh -c \
		'for d in vda vdb vdc; do
		   if dd if=/dev/zero of=/dev/$d bs=1M count=12 conv=fsync 2>/dev/null; then
		     echo $d-WROTE; else echo $d-FAILED; fi
		 done;
		 printf healthy | dd of=/dev/vdd conv=fsync 2>/dev/null;
		 echo 3 >/proc/sys/vm/drop_caches; dd if=/dev/vdd bs=7 count=1 2>/dev/null; echo'
	for e in threads aio io_uring; do
		umount "$tmp/small-$e"
	done
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" vda-FAILED && has_line "$tmp/o" vdb-FAILED &&
		has_line "$tmp/o" vdc-FAILED && has_line "$tmp/o" healthy && ! grep -q unavailable "$tmp/o"; then
		pass enospc_reaches_guest_as_ioerr
	else
		fail enospc_reaches_guest_as_ioerr "status $rc" "$tmp/o"
	fi
}

# A guest writes, into sector 0 of its probed raw disks (one per I/O engine), a qcow2 header
# naming a host file as its raw backing file (the class of QEMU's CVE-2008-2004): each write
# fails with an I/O error, the disks stay raw for `nkvm img info` and for the next boot, whose
# guest never sees the file's bytes. A partition-table-like first sector still goes in. The
# header comes from another disk.
test_blk_probed_raw_refuses_qcow2_header() {
	d="$tmp/probe"
	mkdir -p "$d"
	marker="nkvm-secret-$$-$(date +%s)"
	i=0
	: >"$d/secret"
	while [ $i -lt 2048 ]; do echo "$marker" >>"$d/secret"; i=$((i + 1)); done
	for e in threads aio io_uring; do truncate -s 1M "$d/$e.img"; done
	"$NKVM" img create -q -f qcow2 -o cluster_size=512 -b "$d/secret" -F raw "$d/hdr.qcow2" &&
		truncate -s 64K "$d/hdr.qcow2"
	disks="-d $d/threads.img -d $d/aio.img,engine=aio,cache=none -d $d/io_uring.img,engine=io_uring,cache=none"
	# shellcheck disable=SC2086 # $disks is a word list
	run_guest "$tmp/o" $disks -d "$d/hdr.qcow2,ro,format=raw" -- sh -c \
		'for v in vda vdb vdc; do
		   printf nkvm-mbr | dd of=/dev/$v bs=512 conv=sync oflag=direct 2>/dev/null && echo $v-MBR-WROTE
		   if dd if=/dev/vdd of=/dev/$v bs=64k count=1 oflag=direct; then echo $v-HDR-WROTE; else echo $v-HDR-FAILED; fi
		 done'
	rc1=$rc
	bad=""
	for e in threads aio io_uring; do
		"$NKVM" img info "$d/$e.img" >"$d/info" 2>&1
		grep -qx 'file format: raw' "$d/info" || { cat "$d/info" >>"$tmp/o"; bad="$bad $e-info"; }
		[ "$(dd if="$d/$e.img" bs=8 count=1 2>/dev/null)" = nkvm-mbr ] || bad="$bad $e-first-sector"
		grep -q "$e.img: format probed as raw" "$tmp/o" || bad="$bad $e-notice"
	done
	for v in vda vdb vdc; do
		has_line "$tmp/o" $v-MBR-WROTE && has_line "$tmp/o" $v-HDR-FAILED || bad="$bad $v-writes"
	done
	[ "$(grep -c 'Input/output error' "$tmp/o")" -ge 3 ] || bad="$bad no-EIO"
	# The marker in two halves, so that only the disks' bytes can put it whole in the output.
	m1=${marker%-*}
	m2=-${marker##*-}
	# shellcheck disable=SC2086
	run_guest "$tmp/o2" $disks -- sh -c \
		'for v in vda vdb vdc; do
		   if grep -q "$1$2" /dev/$v; then echo $v-SECRET-SEEN; else echo $v-SECRET-UNSEEN; fi
		 done' sh "$m1" "$m2"
	cat "$tmp/o2" >>"$tmp/o"
	for v in vda vdb vdc; do has_line "$tmp/o" $v-SECRET-UNSEEN || bad="$bad $v-secret"; done
	! grep -q "$marker" "$tmp/o" || bad="$bad marker-in-output"
	rm -rf "$d"
	if [ "$rc1" -eq 0 ] && [ "$rc" -eq 0 ] && [ -z "$bad" ]; then
		pass blk_probed_raw_refuses_qcow2_header
	else
		fail blk_probed_raw_refuses_qcow2_header "status $rc1/$rc,$bad" "$tmp/o"
	fi
}

# --- virtio-fs (--share, --root) ----------------------------------------------------------------
# The helper (tests/integration/fs_helper.c, static) does what busybox cannot (xattrs, mmap,
# fsync, many opens); the guest runs it from a read-only share of its own.
FS_HELPER=${FS_HELPER:-$(pwd)/build/tests/fs_helper}
fs_bin_share() {
	mkdir -p "$tmp/fsbin"
	cp "$FS_HELPER" "$tmp/fsbin/h"
	echo "$tmp/fsbin,tag=fsbin,at=/h,ro"
}

# One line per path under $1: type, size, mode, ids, links, mtime, sha256 or link target, and
# its user.* xattrs. The same text runs in the test host and in the guest ($H: the helper).
FS_MANIFEST='cd "$1" && find . | LC_ALL=C sort | while IFS= read -r f; do
	s=$(stat -c "%F %s %a %u %g %h %Y" "$f")
	case $s in
	"regular file"*) h=$(sha256sum <"$f" | cut -d" " -f1) ;;
	"symbolic link"*) h=$(readlink "$f") ;;
	*) h=- ;;
	esac
	x=""
	if [ ! -L "$f" ] && [ ! -p "$f" ]; then
		for a in $($H listxattr "$f" | LC_ALL=C sort); do
			case $a in user.*) x="$x$a=$($H getxattr "$f" "$a");" ;; esac
		done
	fi
	echo "M|$f|$s|$h|$x"
done'

# Files, a 100 MiB file, symlinks, a hard link, a fifo, an empty dir, unicode names, xattrs;
# then what the guest changes must be exactly what the host sees after.
test_fs_share_tree_and_guest_changes() {
	d=$tmp/tree
	rm -rf "$d" && mkdir -p "$d/sub/deeper" "$d/empty" "$d/rw/olddir"
	echo hello >"$d/a.txt"
	printf 'x%.0s' $(seq 1 5000) >"$d/sub/deeper/5000x"
	head -c 1048576 /dev/urandom >"$d/chunk"
	for i in $(seq 1 100); do cat "$d/chunk"; done >"$d/big" && rm "$d/chunk"
	ln -s a.txt "$d/rel-link"
	ln -s /nowhere/at/all "$d/dangling"
	ln "$d/a.txt" "$d/sub/hard"
	mkfifo "$d/fifo"
	echo unicode >"$d/héllo wörld ✓ 日本"
	chmod 0640 "$d/sub/deeper/5000x"
	"$FS_HELPER" setxattr "$d/a.txt" user.color blue
	"$FS_HELPER" setxattr "$d/sub" user.kind dir
	echo start >"$d/rw/app"
	echo gone >"$d/rw/gone"
	head -c 8192 /dev/zero >"$d/rw/mm"
	H=$FS_HELPER sh -c "$FS_MANIFEST" sh "$d" >"$tmp/host.m"
	run_guest "$tmp/o" -m 512M --share "$d,tag=tree" --share "$(fs_bin_share)" -- sh -c '
		H=/h/h sh -c "$1" sh /mnt/tree
		cd /mnt/tree/rw || exit 9
		echo created >new.txt && mv new.txt renamed.txt &&
		printf 0123456789 >trunc && dd if=/dev/null of=trunc bs=1 seek=4 2>/dev/null &&
		echo more >>app && /h/h fsync renamed.txt && /h/h mmapwrite mm 4100 HELLO &&
		rm gone && mkdir newdir && rmdir olddir && ln renamed.txt hl.txt &&
		ln -s renamed.txt sl && echo changes-done' sh "$FS_MANIFEST"
	grep '^M|' "$tmp/o" >"$tmp/guest.m"
	r=$d/rw
	if [ "$rc" -eq 0 ] && cmp -s "$tmp/host.m" "$tmp/guest.m" && has_line "$tmp/o" changes-done &&
		[ "$(cat "$r/renamed.txt")" = created ] && [ ! -e "$r/new.txt" ] &&
		[ "$(cat "$r/trunc")" = 0123 ] && [ "$(cat "$r/app")" = "start
more" ] && [ "$(dd if="$r/mm" bs=1 skip=4100 count=5 2>/dev/null)" = HELLO ] &&
		[ "$(stat -c %s "$r/mm")" = 8192 ] && [ ! -e "$r/gone" ] && [ -d "$r/newdir" ] &&
		[ ! -e "$r/olddir" ] && [ "$(stat -c %h "$r/hl.txt")" = 2 ] &&
		[ "$(readlink "$r/sl")" = renamed.txt ]; then
		pass fs_share_tree_and_guest_changes
	else
		diff "$tmp/host.m" "$tmp/guest.m" | head -20 >"$tmp/m.diff"
		cat "$tmp/m.diff" "$tmp/o" >"$tmp/o2"
		ls -la "$r" >>"$tmp/o2" 2>&1
		fail fs_share_tree_and_guest_changes "status $rc; manifest or host view differs" "$tmp/o2"
	fi
}

# ro: the init mounts it read-only; remounted rw in the guest, the server still refuses each
# change with EROFS, and the host directory is untouched.
test_fs_share_ro_refuses_each_change() {
	d=$tmp/ro
	rm -rf "$d" && mkdir -p "$d/dir" && echo keep >"$d/f" && echo t >"$d/t"
	H=$FS_HELPER sh -c "$FS_MANIFEST" sh "$d" >"$tmp/ro.before"
	run_guest "$tmp/o" --share "$d,ro" --share "$(fs_bin_share)" -- sh -c '
		grep -q " /mnt/ro virtiofs ro" /proc/mounts && echo mounted-ro
		mount -o remount,rw /mnt/ro || echo remount-failed
		cd /mnt/ro || exit 9
		try() { n=$1; shift
			if out=$("$@" 2>&1); then echo "ALLOWED $n"
			else case $out in *"Read-only file system"*) echo "erofs $n" ;;
				*) echo "OTHER $n: $out" ;; esac; fi; }
		try create touch new; try append sh -c "echo x >>f"; try delete rm f
		try mkdir mkdir d2; try rmdir rmdir dir; try rename mv f g; try symlink ln -s f s
		try link ln f l; try chmod chmod 600 f; try truncate dd if=/dev/null of=t bs=1 seek=0
		try setxattr /h/h setxattr f user.x y; try mmap /h/h mmapwrite f 0 Z
		try mknod mknod p p'
	H=$FS_HELPER sh -c "$FS_MANIFEST" sh "$d" >"$tmp/ro.after"
	n=$(grep -c '^erofs ' "$tmp/o")
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" mounted-ro && [ "$n" -eq 13 ] &&
		cmp -s "$tmp/ro.before" "$tmp/ro.after"; then
		pass fs_share_ro_refuses_each_change
	else
		fail fs_share_ro_refuses_each_change "status $rc, $n of 13 EROFS or host changed" "$tmp/o"
	fi
}

# --root with a minimal root made here (busybox and a script): the script runs as the command
# and its exit status is nkvm's; nkvm run --root / runs the test host's own userland.
test_fs_root_runs_script_and_status_returns() {
	d=$tmp/minroot
	rm -rf "$d" && mkdir -p "$d/bin" "$d/dev" "$d/proc" "$d/sys" "$d/run" "$d/tmp" "$d/etc"
	# busybox sh's command -v names an applet without a path: the test host's is in /usr/bin.
	for bb in /usr/bin/busybox /bin/busybox; do [ -x "$bb" ] && break; done
	cp "$bb" "$d/bin/busybox"
	ln -s busybox "$d/bin/sh"
	echo minimal >"$d/etc/marker"
	printf '#!/bin/sh\n/bin/busybox echo "root says $(/bin/busybox cat /etc/marker)"\n/bin/busybox test -r /proc/version && /bin/busybox echo proc-ok\n/bin/busybox echo written >/etc/from-guest\nexit 42\n' >"$d/bin/script"
	chmod 755 "$d/bin/script"
	run_guest "$tmp/o" --root "$d" -- /bin/script
	rc1=$rc
	cp "$tmp/o" "$tmp/o1"
	run_guest "$tmp/o" --root / --share "$tmp,at=/tmp" -- sh -c 'uname -a; ls -1 /tmp/minroot/etc'
	if [ "$rc1" -eq 42 ] && has_line "$tmp/o1" "root says minimal" && has_line "$tmp/o1" proc-ok &&
		[ "$(cat "$d/etc/from-guest" 2>/dev/null)" = written ] && [ "$rc" -eq 0 ] &&
		grep -q "^Linux nkvm " "$tmp/o" && has_line "$tmp/o" from-guest; then
		pass fs_root_runs_script_and_status_returns
	else
		cat "$tmp/o1" >>"$tmp/o"
		fail fs_root_runs_script_and_status_returns "status $rc1 (want 42) / $rc (want 0)" "$tmp/o"
	fi
}

# Escapes from inside the guest fail and the host file outside the share stays untouched:
# .. chains, absolute and relative symlinks out, /proc/self/root paths, a hard link to a file
# outside, mknod of a block device.
test_fs_escapes_fail_and_canary_untouched() {
	e=$tmp/esc
	rm -rf "$e" && mkdir -p "$e/share/sub"
	echo canary >"$e/canary"
	ln -s "$e/canary" "$e/share/abs"
	ln -s /etc "$e/share/etc"
	ln -s ../canary "$e/share/rel"
	ln -s ../../canary "$e/share/sub/rel2"
	ln -s "/proc/self/root$e/canary" "$e/share/pr"
	# The race: the host swaps share/x between a directory and a symlink to the directory
	# that holds the canary, while the guest keeps reading x/canary.
	mkdir -p "$e/share/x" && echo inside >"$e/share/x/canary"
	(while [ -e "$e/share/x" ] || [ -e "$e/share/x.d" ]; do
		mv "$e/share/x" "$e/share/x.d" 2>/dev/null && ln -s "$e" "$e/share/x" &&
			rm -f "$e/share/x" && mv "$e/share/x.d" "$e/share/x"
		usleep 20000 2>/dev/null # leave the emulated test host's CPUs to the guest
	done) &
	swapper=$!
	run_guest "$tmp/o" --share "$e/share,tag=esc" -- sh -c '
		cd /mnt/esc || exit 9
		for p in abs rel sub/rel2 pr ../../../../canary sub/../../canary "/proc/self/root'"$e"'/canary"; do
			echo pwned >"$p" 2>/dev/null
			if cat "$p" 2>/dev/null | grep -q canary; then echo "READ $p"; fi
		done
		if ln /etc/passwd /mnt/esc/hl 2>/dev/null; then echo "LINKED out"; fi
		if mknod blk b 8 0 2>/dev/null; then echo "MKNOD blk"; fi
		i=0; while [ $i -lt 300 ]; do
			# The shell reads it itself: no fork per try, so the loop is quick.
			if read -r l <x/canary 2>/dev/null && [ "$l" = canary ]; then echo "READ race"; fi
			i=$((i + 1))
		done
		echo escapes-done'
	kill "$swapper" 2>/dev/null
	wait "$swapper" 2>/dev/null
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" escapes-done && ! grep -qE '^(READ|LINKED|MKNOD)' "$tmp/o" &&
		[ "$(cat "$e/canary")" = canary ] && [ ! -e "$e/share/blk" ] && [ ! -e "$e/share/hl" ]; then
		pass fs_escapes_fail_and_canary_untouched
	else
		fail fs_escapes_fail_and_canary_untouched "status $rc; an escape worked or canary changed" "$tmp/o"
	fi
}

# A guest that opens one file far more often than it may hold: the opens past the bound fail,
# nkvm's descriptors stay bounded, and after closing them the guest can open again. nkvm runs
# under a descriptor limit of 4096, from which a share's bounds are derived (src/cmd/run_dev_fs.c:
# (4096 - 512) / 5 = 716 handles), so that the guest reaches the bound in seconds rather than
# the minutes 16384 opens of the default bound take under TCG (the default bound itself is
# tests/unit/test_fuse_server.c's).
test_fs_guest_cannot_exceed_handle_bound() {
	d=$tmp/many
	rm -rf "$d" && mkdir -p "$d" && echo x >"$d/f"
	(ulimit -n 4096 && exec "$NKVM" run -m 1G --share "$d,tag=many" --share "$(fs_bin_share)" -- \
		/h/h openmany /mnt/many/f 1500 8 </dev/null >"$tmp/many.raw" 2>&1) &
	pid=$! # nkvm itself (the subshell execs it), whose descriptors are counted
	max=0
	i=0
	while kill -0 "$pid" 2>/dev/null && [ $i -lt 280 ]; do
		n=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
		[ "$n" -gt "$max" ] && max=$n
		sleep 1
		i=$((i + 1))
	done
	kill "$pid" 2>/dev/null
	wait "$pid"
	rc=$?
	tr -d '\r' <"$tmp/many.raw" >"$tmp/o"
	held=$(sed -n 's/^held \([0-9]*\) failed.*/\1/p' "$tmp/o")
	if [ "$rc" -eq 0 ] && [ -n "$held" ] && [ "$held" -le 716 ] && [ "$held" -ge 700 ] &&
		[ "$max" -le 4096 ] &&
		has_line "$tmp/o" "reopen ok"; then
		echo "   (guest held $held handles; nkvm's descriptors peaked at $max)"
		pass fs_guest_cannot_exceed_handle_bound
	else
		fail fs_guest_cannot_exceed_handle_bound "status $rc, held ${held:-?}, nkvm fds peaked at $max" "$tmp/o"
	fi
}

# Without --share the guest never loads virtiofs; with one it does. And bad --share input
# gets one line before any guest starts.
test_fs_modules_on_demand_and_bad_input() {
	run_guest "$tmp/o" -- sh -c 'grep -c "^virtiofs " /proc/modules'
	rc1=$rc
	cp "$tmp/o" "$tmp/o1"
	echo f >"$tmp/afile"
	"$NKVM" run --share "$tmp/none" -- true >"$tmp/b1" 2>&1
	b1=$?
	"$NKVM" run --share "$tmp/afile" -- true >"$tmp/b2" 2>&1
	b2=$?
	if [ "$rc1" -ne 0 ] && has_line "$tmp/o1" 0 && [ "$b1" -eq 2 ] && [ "$b2" -eq 2 ] &&
		has_line "$tmp/b1" "nkvm: --share $tmp/none: no such directory" &&
		has_line "$tmp/b2" "nkvm: --share $tmp/afile: not a directory"; then
		pass fs_modules_on_demand_and_bad_input
	else
		cat "$tmp/b1" "$tmp/b2" >>"$tmp/o1"
		fail fs_modules_on_demand_and_bad_input "status $rc1/$b1/$b2" "$tmp/o1"
	fi
}

# Waits up to $2 seconds for file $1 to hold a line matching $3 (grep -E); 1 when it never did.
wait_for_line() {
	n=0
	while [ "$n" -lt "$2" ]; do
		tr -d '\r' <"$1" | grep -qE -- "$3" && return 0
		sleep 1
		n=$((n + 1))
	done
	return 1
}

# Two guests with different names at once: list shows both (and --json parses), a third with a
# live name is refused, and their sockets are gone once they end (SIGTERM).
test_list_shows_two_named_guests() {
	"$NKVM" run --name it-a -- sleep 300 </dev/null >"$tmp/a" 2>&1 &
	pa=$!
	"$NKVM" run --name it-b -c 2 -m 128M -- sleep 300 </dev/null >"$tmp/b" 2>&1 &
	pb=$!
	n=0
	while [ $n -lt 60 ]; do
		"$NKVM" list >"$tmp/l" 2>&1
		grep -q '^it-a ' "$tmp/l" && grep -q '^it-b ' "$tmp/l" && break
		sleep 1
		n=$((n + 1))
	done
	"$NKVM" list --json >"$tmp/j" 2>"$tmp/j.err"
	"$NKVM" run --name it-a -- true </dev/null >"$tmp/dup" 2>&1
	rcdup=$?
	kill -TERM "$pa" "$pb"
	wait "$pa"
	wait "$pb"
	"$NKVM" list >"$tmp/after" 2>&1
	if ! grep -q '^it-a .* Running  *1  *256M' "$tmp/l" || ! grep -q '^it-b .* 2  *128M' "$tmp/l"; then
		fail list_shows_two_named_guests "list did not show both" "$tmp/l"
	elif ! jq -e 'map(.name) == ["it-a", "it-b"] and .[1].cpus == 2 and .[1].memory == 134217728' \
		"$tmp/j" >/dev/null; then
		fail list_shows_two_named_guests "list --json" "$tmp/j"
	elif [ "$rcdup" -ne 1 ] || ! grep -q 'it-a: a guest of that name is running' "$tmp/dup"; then
		fail list_shows_two_named_guests "a live name: status $rcdup, want 1" "$tmp/dup"
	elif grep -q '^it-' "$tmp/after" || ls /run/nkvm/it-* 2>/dev/null; then
		fail list_shows_two_named_guests "sockets left after SIGTERM" "$tmp/after"
	else
		pass list_shows_two_named_guests
	fi
}

# The last "n I T" line the counting guest printed: "I T".
last_count() {
	tr -d '\r' <"$tmp/cnt" | sed -n 's/^n \([0-9]*\) \([0-9]*\)$/\1 \2/p' | tail -1
}

# A guest counting once a second (with its date): pause stops the count, stat says Paused,
# resume goes on at the next number, and its date is not left behind by the 5 s pause.
test_pause_stops_counting_and_resume_continues() {
	"$NKVM" run --name it-count -- sh -c \
		'i=0; while [ $i -lt 600 ]; do i=$((i + 1)); echo "n $i $(date +%s)"; sleep 1; done' \
		</dev/null >"$tmp/cnt" 2>&1 &
	pc=$!
	why=""
	wait_for_line "$tmp/cnt" 180 '^n 3 ' || why="the guest never counted to 3"
	if [ -z "$why" ]; then
		set -- $(last_count)
		lag0=$(($(date +%s) - $2))
		"$NKVM" pause it-count >"$tmp/p1" 2>&1 || why="pause: status $?"
	fi
	if [ -z "$why" ]; then
		sleep 1
		before=$(last_count)
		"$NKVM" stat it-count >"$tmp/stat" 2>&1 || why="stat: status $?"
		"$NKVM" stat it-count --json >"$tmp/statj" 2>&1
		"$NKVM" pause it-count >"$tmp/p2" 2>&1
		rc2=$?
		sleep 5
		during=$(last_count)
		"$NKVM" resume it-count >"$tmp/r1" 2>&1 || why="resume: status $?"
	fi
	if [ -z "$why" ]; then
		set -- $before
		next=$(($1 + 1))
		wait_for_line "$tmp/cnt" 60 "^n $((next + 2)) " || why="no count after resume"
		set -- $(last_count)
		lag1=$(($(date +%s) - $2))
	fi
	kill -TERM "$pc"
	wait "$pc"
	# Every number once, in order: nothing lost or repeated across the pause.
	gaps=$(tr -d '\r' <"$tmp/cnt" | sed -n 's/^n \([0-9]*\) .*/\1/p' | awk 'NR != $1 { print NR; exit }')
	if [ -n "$why" ]; then
		fail pause_stops_counting_and_resume_continues "$why" "$tmp/cnt"
	elif [ "$before" != "$during" ]; then
		fail pause_stops_counting_and_resume_continues "counted while paused: $before, then $during" "$tmp/cnt"
	elif [ -n "$gaps" ]; then
		fail pause_stops_counting_and_resume_continues "the count skipped at line $gaps" "$tmp/cnt"
	elif ! grep -q '^state: *Paused$' "$tmp/stat" || ! grep -q '^vcpu0: io=[1-9]' "$tmp/stat" ||
		[ "$(jq -r .info.state "$tmp/statj")" != Paused ]; then
		fail pause_stops_counting_and_resume_continues "stat did not show it paused" "$tmp/stat"
	elif [ "$rc2" -ne 1 ] || ! grep -q 'already paused' "$tmp/p2"; then
		fail pause_stops_counting_and_resume_continues "a second pause: status $rc2, want 1" "$tmp/p2"
	else
		pass pause_stops_counting_and_resume_continues
	fi
	# The guest's date against the host's, before and after: the pause must not open a gap.
	if [ -z "$why" ] && [ $((lag1 - lag0)) -ge 3 ]; then
		fail pause_keeps_guest_date "the guest's date fell behind by $((lag1 - lag0)) s (lag $lag0 s, then $lag1 s)" "$tmp/cnt"
	elif [ -z "$why" ]; then
		pass pause_keeps_guest_date
	else
		fail pause_keeps_guest_date "$why"
	fi
}

# The guest's last "mem TOTAL_KB FREE_KB" line: "TOTAL_KB FREE_KB".
last_mem() {
	tr -d '\r' <"$tmp/bal" | sed -n 's/^mem \([0-9]*\) \([0-9]*\)$/\1 \2/p' | tail -1
}

# Waits up to $1 seconds for the guest's free memory (kB) to satisfy "test FREE $2 $3".
wait_mem_free() {
	n=0
	while [ "$n" -lt "$1" ]; do
		set -- "$1" "$2" "$3" $(last_mem)
		[ -n "${5:-}" ] && [ "$5" "$2" "$3" ] && return 0
		sleep 1
		n=$((n + 1))
	done
	return 1
}

# A 512M guest that touched ~380M (a tmpfs filled, then emptied): `nkvm balloon NAME 128M`
# takes about 384M from its free memory and nkvm's RSS falls from its peak by at least 80% of
# that; stat shows the balloon's figures and the guest's own; `nkvm balloon NAME 512M` gives
# the memory back to the guest; and a size above its memory is refused (status 1).
test_balloon_takes_memory_and_gives_it_back() {
	"$NKVM" run --name it-bal -m 512M -- sh -c \
		'mkdir -p /fill && mount -t tmpfs -o size=450m none /fill &&
		 dd if=/dev/zero of=/fill/f bs=1M count=380 2>/dev/null; rm -f /fill/f; echo FILLED
		 i=0; while [ $i -lt 600 ]; do i=$((i + 1));
		 echo "mem $(awk "/^MemTotal:/ { t = \$2 } /^MemFree:/ { f = \$2 } END { print t, f }" /proc/meminfo)";
		 sleep 1; done' </dev/null >"$tmp/bal" 2>&1 &
	pc=$!
	why=""
	want_kb=$((384 * 1024 * 8 / 10))
	wait_for_line "$tmp/bal" 240 '^FILLED' && wait_for_line "$tmp/bal" 30 '^mem ' ||
		why="the guest never filled its memory"
	if [ -z "$why" ]; then
		sleep 3
		set -- $(last_mem)
		free0=$2
		"$NKVM" balloon it-bal 128M >"$tmp/b1" 2>&1 || why="balloon 128M: status $?"
	fi
	if [ -z "$why" ]; then
		wait_mem_free 120 -le $((free0 - want_kb)) ||
			why="the guest's free memory stayed at $(last_mem) kB (from $free0)"
		# Until the driver says it holds all 384M (it inflates 1M at a time).
		n=0
		while [ $n -lt 60 ]; do
			"$NKVM" stat it-bal --json >"$tmp/statj" 2>&1
			jq -e '.counters.balloon.actual == 402653184' "$tmp/statj" >/dev/null && break
			sleep 1
			n=$((n + 1))
		done
		sleep 2
		hwm=$(awk '/^VmHWM:/ { print $2 }' /proc/$pc/status)
		rss=$(awk '/^VmRSS:/ { print $2 }' /proc/$pc/status)
		"$NKVM" stat it-bal >"$tmp/stat" 2>&1
		"$NKVM" stat it-bal --json >"$tmp/statj" 2>&1
		"$NKVM" balloon it-bal 1G >"$tmp/big" 2>&1
		rcbig=$?
	fi
	if [ -z "$why" ]; then
		"$NKVM" balloon it-bal 512M >"$tmp/b2" 2>&1 || why="balloon 512M: status $?"
		wait_mem_free 120 -ge $((free0 - (384 * 1024 - want_kb))) ||
			why="deflating gave back too little: free $(last_mem) kB (was $free0)"
	fi
	kill -TERM "$pc"
	wait "$pc"
	tn=balloon_takes_memory_and_gives_it_back
	if [ -n "$why" ]; then
		fail $tn "$why" "$tmp/bal"
	elif [ $((hwm - rss)) -lt "$want_kb" ]; then
		fail $tn "nkvm's RSS fell by $(((hwm - rss) / 1024))M from its peak, want 80% of 384M" "$tmp/stat"
	elif ! grep -q '^balloon: target=384M actual=384M' "$tmp/stat" || ! grep -q '^guest: .*free=' "$tmp/stat"; then
		fail $tn "stat did not show the balloon's figures" "$tmp/stat"
	elif ! jq -e '.counters.balloon.inflated >= 322122547 and .counters.guest_memory.total_memory > 0' \
		"$tmp/statj" >/dev/null; then
		fail $tn "stat --json" "$tmp/statj"
	elif [ "$rcbig" -ne 1 ] || ! grep -q "more than the guest's memory" "$tmp/big"; then
		fail $tn "balloon 1G on a 512M guest: status $rcbig, want 1" "$tmp/big"
	else
		echo "   balloon: guest free ${free0} kB -> $(last_mem); nkvm RSS peak $((hwm / 1024))M -> $((rss / 1024))M"
		pass $tn
	fi
}

# Commands naming no guest: status 3; a guest that died leaves a socket that is removed.
test_control_commands_without_guest() {
	"$NKVM" pause no-such-guest >"$tmp/o" 2>&1
	rc=$?
	"$NKVM" stat >"$tmp/u" 2>&1
	rcu=$?
	"$NKVM" run --name it-dies -- sleep 300 </dev/null >"$tmp/d" 2>&1 &
	pd=$!
	sleep 3 # it binds its socket first thing
	kill -KILL "$pd"
	wait "$pd"
	"$NKVM" stat it-dies >"$tmp/s" 2>&1
	rcs=$?
	if [ "$rc" -eq 3 ] && [ "$rcu" -eq 2 ] && [ "$rcs" -eq 3 ] &&
		grep -q 'it-dies: the guest has died; removed its stale socket' "$tmp/s" &&
		[ ! -e /run/nkvm/it-dies.sock ]; then
		pass control_commands_without_guest
	else
		fail control_commands_without_guest "status $rc, $rcu, $rcs; want 3, 2, 3" "$tmp/s"
	fi
}

# --- networking (-n) -------------------------------------------------------------------------
# The test host's servers listen on ports from here (different in each suite run); TAP tests use
# this subnet, the host side given by host_ip=, the guest's by guest_ip= (set by nkvm's init).
NET_PORT=$((20000 + $$ % 20000))
NET_HOST=192.168.100.1
NET_GUEST=192.168.100.2
# MiB through the TAP each way, a multiple of 16. Issue 16 asks for 256; under the test host's
# TCG, shared with other work, the guest moved about 1 MB/s (256 MiB in did not finish in 280 s),
# so the suite moves 32 by default: NET_TAP_MIB=256 for the full size.
NET_TAP_MIB=${NET_TAP_MIB:-32}

# net_data FILE MIB: random bytes, made once per suite run.
net_data() {
	[ -s "$1" ] || head -c $(($2 * 1048576)) /dev/urandom >"$1"
}

sum_of() {
	sha256sum "$1" | cut -d' ' -f1
}

# A FIFO nobody writes to: as nc's stdin it never ends, so nc leaves the connection open for
# what the other side sends (busybox nc shuts down its side at the end of its input).
net_hold() {
	[ -p "$tmp/hold" ] || mkfifo "$tmp/hold"
}

# net_start OUT -- nkvm run arguments...: nkvm in the background ($net_pid), output to OUT.raw.
net_start() {
	out=$1
	shift
	net_started=$(date +%s)
	timeout -k 10 300 "$NKVM" run "$@" </dev/null >"$out.raw" 2>&1 &
	net_pid=$!
}

# net_wait: waits for net_start's nkvm; status in $rc, output (CRs stripped) in $out.
net_wait() {
	wait "$net_pid"
	rc=$?
	tr -d '\r' <"$out.raw" >"$out"
	echo "time: $(($(date +%s) - net_started)) s"
}

# net_wait_line OUT.raw LINE SECONDS: LINE shows in nkvm's output while nkvm runs.
net_wait_line() {
	i=0
	while [ $i -lt "$3" ] && kill -0 "$net_pid" 2>/dev/null; do
		tr -d '\r' <"$1" | grep -qxF -- "$2" && return 0
		sleep 1
		i=$((i + 1))
	done
	return 1
}

# The TAP devices nkvm created (nkvmN).
net_taps() {
	for d in /sys/class/net/nkvm*; do
		if [ -e "$d" ]; then echo "${d##*/}"; fi
	done
}

test_net_bad_options() {
	expect_error net_error_bad_mac "-n user,mac=zz: mac must be six hex bytes" -n user,mac=zz -- true
	expect_error net_error_queues_zero "-n user,queues=0: queues must be 1 to 16" \
		-n user,queues=0 -- true
	expect_error net_error_hostfwd_port \
		"-n user,hostfwd=tcp:99999-22: hostfwd port 99999 is not 1 to 65535" \
		-n user,hostfwd=tcp:99999-22 -- true
	expect_error net_error_tap_key_on_user "-n user,ifname=tap0: ifname is for -n tap only" \
		-n user,ifname=tap0 -- true
	expect_error net_error_user_key_on_tap \
		"-n tap,hostfwd=tcp:2222-22: hostfwd is for -n user only" \
		-n tap,hostfwd=tcp:2222-22 -- true
	expect_error net_error_ifname_not_a_tap "-n tap: lo is not a TAP device" -n tap,ifname=lo -- true
	# Without CAP_NET_ADMIN (as nobody, whom the test host lets use /dev/kvm for this).
	if [ -f /etc/nested/cmd ] && command -v start-stop-daemon >/dev/null; then
		kvm_mode=$(stat -c %a /dev/kvm)
		chmod 666 /dev/kvm
		# start-stop-daemon looks the IDs up; the test host has no user database of its own.
		grep -qs '^nobody:' /etc/passwd || echo 'nobody:x:65534:65534::/:/bin/false' >>/etc/passwd
		grep -qs '^nogroup:' /etc/group || echo 'nogroup:x:65534:' >>/etc/group
		printf '#!/bin/sh\nexec start-stop-daemon -S -c 65534:65534 -x %s -- "$@"\n' \
			"$(realpath "$NKVM")" >"$tmp/nobody-nkvm"
		chmod 755 "$tmp/nobody-nkvm"
		saved=$NKVM
		NKVM=$tmp/nobody-nkvm
		# The test host has no udev to make /dev/net/tun 0666: nobody cannot even open it...
		tun_mode=$(stat -c %a /dev/net/tun)
		chmod 600 /dev/net/tun
		expect_error net_error_no_permission_for_tun "-n tap: /dev/net/tun: Permission denied" \
			-n tap -- true
		# ...and where everyone may, creating a TAP needs CAP_NET_ADMIN.
		chmod 666 /dev/net/tun
		expect_error net_error_no_cap_net_admin \
			"-n tap: /dev/net/tun: cannot create a TAP: Operation not permitted" -n tap -- true
		NKVM=$saved
		chmod "$tun_mode" /dev/net/tun
		chmod "$kvm_mode" /dev/kvm
	fi
}

# No NIC: no NIC driver loaded; lo is up all the same.
test_net_no_nic_no_driver_lo_up() {
	run_guest "$tmp/o" -- sh -c 'test -d /sys/module/virtio_net && echo DRIVER-LOADED;
		ip -o link show lo | grep -q "[<,]UP[,>]" && echo LO-UP;
		ping -c 1 -W 2 127.0.0.1 >/dev/null && echo LO-PING'
	if [ "$rc" -eq 0 ] && ! grep -q DRIVER-LOADED "$tmp/o" && has_line "$tmp/o" LO-UP &&
		has_line "$tmp/o" LO-PING; then
		pass net_no_nic_no_driver_lo_up
	else
		fail net_no_nic_no_driver_lo_up "status $rc" "$tmp/o"
	fi
}

# -n user: the guest is set up as QEMU's (address, route, DNS) and fetches 64 MiB from a server
# on the test host's 127.0.0.1, which it reaches as 10.0.2.2.
test_net_user_fetches_64m_from_host() {
	mkdir -p "$tmp/www"
	net_data "$tmp/www/big" 64
	want=$(sum_of "$tmp/www/big")
	httpd -f -p "127.0.0.1:$NET_PORT" -h "$tmp/www" &
	httpd_pid=$!
	start=$(date +%s)
	run_guest "$tmp/o" -n user -- sh -c 'ip -o -4 addr show; ip route; cat /etc/resolv.conf;
		wget -q -O - "http://10.0.2.2:$1/big" | sha256sum' sh "$NET_PORT"
	echo "time: $(($(date +%s) - start)) s"
	kill "$httpd_pid"
	wait "$httpd_pid" 2>/dev/null
	if [ "$rc" -eq 0 ] && grep -q "inet 10.0.2.15/24" "$tmp/o" &&
		grep -q "^default via 10.0.2.2 " "$tmp/o" && has_line "$tmp/o" "nameserver 10.0.2.3" &&
		has_line "$tmp/o" "$want  -"; then
		pass net_user_fetches_64m_from_host
	else
		fail net_user_fetches_64m_from_host "status $rc, want sha256 $want" "$tmp/o"
	fi
}

# hostfwd (given twice): the host's 127.0.0.1 ports reach listeners in the guest, 4 MiB each way.
test_net_user_hostfwd_both_ways() {
	up=$NET_PORT
	down=$((NET_PORT + 1))
	net_data "$tmp/up" 4
	net_hold
	rm -f "$tmp/down"
	net_start "$tmp/o" -n "user,hostfwd=tcp:$up-5555,hostfwd=tcp::$down-:5556" -- sh -c '
		head -c 4194304 /dev/urandom >/tmp/down
		echo "$(sha256sum </tmp/down | cut -d" " -f1) DOWN-SUM"
		mkfifo /tmp/hold
		nc -l -p 5555 0<>/tmp/hold | sha256sum | sed "s/ .*/ UP-SUM/" &
		nc -l -p 5556 </tmp/down &
		sleep 1
		echo LISTENING
		wait'
	if net_wait_line "$tmp/o.raw" LISTENING 240; then
		timeout 60 nc 127.0.0.1 "$up" <"$tmp/up"
		timeout 60 nc 127.0.0.1 "$down" >"$tmp/down" 0<>"$tmp/hold"
	fi
	net_wait
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" "$(sum_of "$tmp/up") UP-SUM" &&
		[ -s "$tmp/down" ] && has_line "$tmp/o" "$(sum_of "$tmp/down") DOWN-SUM"; then
		pass net_user_hostfwd_both_ways
	else
		fail net_user_hostfwd_both_ways "status $rc, $(wc -c <"$tmp/down") bytes down" "$tmp/o"
	fi
}

# net_tap_data FILE MIB: MIB MiB that no run of TCP segments repeats within 16 MiB, made fast
# (the test host's /dev/urandom and sha256sum run at a few MB/s under TCG).
net_tap_data() {
	if [ ! -s "$1" ]; then
		head -c 16777216 /dev/urandom >"$1.seed"
		i=0
		while [ $i -lt $(($2 / 16)) ]; do
			cat "$1.seed"
			i=$((i + 1))
		done >"$1"
		rm -f "$1.seed"
	fi
}

# net_tap_traffic VHOST: ping both ways; NET_TAP_MIB from the test host into the guest's RAM and
# back, compared byte for byte (the guest's sha256sum does 1.5 MB/s under TCG); then a
# 1 MiB write from the guest (httpd's sendfile), which leaves it as large GSO frames: far fewer
# frames on the TAP than the 724 of 1448 bytes it would take without offloads; and the TAP is
# gone after exit.
net_tap_traffic() {
	v=$1
	name=net_tap_vhost_$v
	# Its own name: $tmp is the whole suite's, and a file another test left would be reused.
	net_tap_data "$tmp/net-tap-data" "$NET_TAP_MIB"
	net_hold
	rm -f "$tmp/recv" "$tmp/gso"
	timeout 280 nc -l -p "$NET_PORT" <"$tmp/net-tap-data" >/dev/null &
	serve_pid=$!
	timeout 280 nc -l -p $((NET_PORT + 1)) >"$tmp/recv" 0<>"$tmp/hold" &
	recv_pid=$!
	net_start "$tmp/o" -m $((2 * NET_TAP_MIB + 256))M \
		-n "tap,host_ip=$NET_HOST/24,guest_ip=$NET_GUEST/24,vhost=$v" -- sh -c '
		ping -c 2 -W 5 "$1" >/dev/null || exit 3
		echo GUEST-PING-OK
		mkfifo /tmp/hold
		nc "$1" "$2" 0<>/tmp/hold >/tmp/data || exit 4
		echo "RECEIVED $(wc -c </tmp/data)"
		nc "$1" $(($2 + 1)) </tmp/data || exit 5
		rm /tmp/data
		mkdir /tmp/www
		head -c 1048576 /dev/zero >/tmp/www/mib
		httpd -p 8080 -h /tmp/www || exit 6
		echo SERVING
		nc -l -p $(($2 + 2)) 0<>/tmp/hold' sh "$NET_HOST" "$NET_PORT"
	host_ping=no
	i=0
	while [ $i -lt 200 ] && kill -0 "$net_pid" 2>/dev/null; do
		if ping -c 1 -W 1 "$NET_GUEST" >/dev/null 2>&1; then
			host_ping=ok
			break
		fi
		i=$((i + 1))
	done
	tap=$(net_taps | head -n 1)
	wait "$serve_pid" "$recv_pid"
	# The guest's httpd sends the MiB with one sendfile(); the frames the guest sent meanwhile.
	frames=none
	if [ -n "$tap" ] && net_wait_line "$tmp/o.raw" SERVING 60; then
		rx0=$(cat "/sys/class/net/$tap/statistics/rx_packets")
		timeout 60 wget -q -O "$tmp/gso" "http://$NET_GUEST:8080/mib"
		rx1=$(cat "/sys/class/net/$tap/statistics/rx_packets")
		frames=$((rx1 - rx0))
		# Tells the guest to end.
		timeout 10 nc "$NET_GUEST" $((NET_PORT + 2)) </dev/null
	fi
	net_wait
	echo "time: $name, $frames frames for 1 MiB"
	left=$(net_taps)
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" GUEST-PING-OK && [ "$host_ping" = ok ] &&
		has_line "$tmp/o" "RECEIVED $((NET_TAP_MIB * 1048576))" && cmp -s "$tmp/net-tap-data" "$tmp/recv" &&
		[ "$(wc -c <"$tmp/gso")" -eq 1048576 ] && [ "$frames" -lt 180 ] && [ -z "$left" ]; then
		pass "$name"
	else
		fail "$name" "status $rc, tap ${tap:-none}, host ping $host_ping, $frames frames, \
$(wc -c <"$tmp/recv" 2>/dev/null) bytes back, TAPs left: ${left:-none}" "$tmp/o"
	fi
}

test_net_tap_vhost_on() {
	net_tap_traffic on
}

test_net_tap_vhost_off() {
	net_tap_traffic off
}

# -c 2, queues=2: four connections, two sent from each vCPU; each queue's interrupt counts.
net_tap_two_queues() {
	v=$1
	name=net_tap_two_queues_vhost_$v
	net_hold
	listeners=
	for i in 0 1 2 3; do
		timeout 200 nc -l -p $((NET_PORT + i)) >/dev/null 0<>"$tmp/hold" &
		listeners="$listeners $!"
	done
	net_start "$tmp/o" -c 2 -n "tap,host_ip=$NET_HOST/24,guest_ip=$NET_GUEST/24,queues=2,vhost=$v" \
		-- sh -c 'for i in 0 1 2 3; do
			taskset $((1 << (i % 2))) sh -c "head -c 4194304 /dev/zero | nc $1 $(($2 + i))" &
		done
		wait
		awk "/virtio[0-9]+-(input|output)\\.[0-9]+\$/ { print \"QUEUE\", \$NF, \$2 + \$3 }" \
			/proc/interrupts' sh "$NET_HOST" "$NET_PORT"
	net_wait
	# Done with the guest, or never connected by it.
	# shellcheck disable=SC2086 # a list of PIDs
	kill $listeners 2>/dev/null
	busy=$(grep -cE '^QUEUE virtio[0-9]+-(input|output)\.[01] [1-9]' "$tmp/o")
	if [ "$rc" -eq 0 ] && [ "$busy" -eq 4 ]; then
		pass "$name"
	else
		fail "$name" "status $rc, $busy of 4 queue vectors counted" "$tmp/o"
	fi
}

test_net_tap_two_queues() {
	net_tap_two_queues on
	net_tap_two_queues off
}

# The TAP nkvm made goes with it, also when nkvm is killed with SIGKILL.
test_net_tap_gone_after_kill_9() {
	net_start "$tmp/o" -n tap -- sleep 600
	i=0
	while [ $i -lt 60 ] && [ -z "$(net_taps)" ] && kill -0 "$net_pid" 2>/dev/null; do
		sleep 1
		i=$((i + 1))
	done
	tap=$(net_taps)
	kill -9 "$net_pid"
	net_wait
	i=0
	while [ $i -lt 10 ] && [ -n "$(net_taps)" ]; do
		sleep 1
		i=$((i + 1))
	done
	if [ -n "$tap" ] && [ "$rc" -eq 137 ] && [ -z "$(net_taps)" ]; then
		pass net_tap_gone_after_kill_9
	else
		fail net_tap_gone_after_kill_9 "status $rc, TAP ${tap:-never made}, left: $(net_taps)" \
			"$tmp/o"
	fi
}

# The guest's end of the vsock tests: a listener on port 5000 whose bytes it sums ("in SUM"),
# then 300000 bytes of its own ("out SUM") sent to the host's port 6000. The sizes and the
# kernel's vsock messages are there for a failure's report.
vsock_guest_script='socat -u VSOCK-LISTEN:5000 CREATE:/tmp/in & sleep 1; echo vsock-ready; wait
echo "in $(md5sum </tmp/in | cut -d" " -f1)"; echo "in-size $(wc -c </tmp/in)"
head -c 300000 /dev/urandom >/tmp/out; echo "out $(md5sum </tmp/out | cut -d" " -f1)"
socat -u FILE:/tmp/out VSOCK-CONNECT:2:6000 && echo sent
dmesg | grep -i vsock'

# Runs $1 (a command that sends $tmp/vs-send to the guest's port 5000) until it works, at most 5
# times, once the guest listens; then waits for the guest (pid $2). Sets why: "" on success.
vsock_host_send() {
	why=""
	if ! wait_for_line "$tmp/vs-guest.raw" 240 '^vsock-ready$'; then
		why="the guest never listened"
		return
	fi
	n=0
	until eval "$1"; do
		n=$((n + 1))
		if [ $n -ge 5 ]; then
			why="could not send to the guest's port 5000"
			return
		fi
		sleep 1
	done
	wait "$2"
}

# vsock_guest_ended PID: waits for the guest and puts its output, CRs stripped (the serial
# console ends lines with CR LF, and has_line matches whole lines), in $tmp/vs-guest.
vsock_guest_ended() {
	wait "$1" 2>/dev/null
	tr -d '\r' <"$tmp/vs-guest.raw" >"$tmp/vs-guest"
}

# What the guest summed and sent, against the host's sums: "" when the bytes match both ways;
# else which way differs, with both ends' sizes and sums.
vsock_check() {
	want_in=$(md5sum <"$tmp/vs-send" | cut -d' ' -f1)
	got_out=$(md5sum <"$1" 2>/dev/null | cut -d' ' -f1)
	if ! has_line "$tmp/vs-guest" "in $want_in"; then
		echo "host to guest: the host sent $(wc -c <"$tmp/vs-send") bytes, md5 $want_in;" \
			"the guest:" $(grep -E '^in(-size)? ' "$tmp/vs-guest")
	elif ! has_line "$tmp/vs-guest" "out $got_out" || ! has_line "$tmp/vs-guest" sent; then
		echo "guest to host: the host got $(wc -c <"$1" 2>/dev/null || echo no) bytes," \
			"md5 $got_out; the guest:" $(grep -E '^(out |sent)' "$tmp/vs-guest")
	fi
}

# vhost-vsock: host `socat VSOCK-CONNECT:CID:5000` reaches a listener in the guest, and the guest's
# VSOCK-CONNECT:2:6000 a host VSOCK-LISTEN; 200000 and 300000 bytes arrive unchanged.
test_vsock_vhost_both_ways() {
	head -c 200000 /dev/urandom >"$tmp/vs-send"
	rm -f "$tmp/vs-recv"
	: >"$tmp/vs-guest.raw"
	timeout 300 socat -u VSOCK-LISTEN:6000 CREATE:"$tmp/vs-recv" 2>"$tmp/vs-l.err" &
	pl=$!
	"$NKVM" run --vsock 7 -- sh -c "$vsock_guest_script" </dev/null >"$tmp/vs-guest.raw" 2>&1 &
	pg=$!
	vsock_host_send 'timeout 30 socat -u FILE:"$tmp/vs-send" VSOCK-CONNECT:7:5000' "$pg"
	# On a failure neither end may be left waiting for the other.
	[ -z "$why" ] || kill "$pg" "$pl" 2>/dev/null
	wait "$pl"
	vsock_guest_ended "$pg"
	[ -n "$why" ] || why=$(vsock_check "$tmp/vs-recv")
	if [ -n "$why" ]; then
		fail vsock_vhost_both_ways "$why" "$tmp/vs-guest"
	else
		pass vsock_vhost_both_ways
	fi
}

# The unix-socket back end: a host program's "CONNECT 5000" gets "OK PORT" and reaches the
# guest's listener; the guest's connection to host port 6000 reaches the listener at PATH_6000.
test_vsock_socket_connect_protocol_both_ways() {
	sock=$tmp/vs.sock
	head -c 200000 /dev/urandom >"$tmp/vs-send"
	rm -f "$tmp/vs-recv" "$tmp/vs-ok"
	: >"$tmp/vs-guest.raw"
	timeout 300 socat -u UNIX-LISTEN:"${sock}_6000" CREATE:"$tmp/vs-recv" 2>"$tmp/vs-l.err" &
	pl=$!
	"$NKVM" run --vsock 8,socket="$sock" -- sh -c "$vsock_guest_script" </dev/null \
		>"$tmp/vs-guest.raw" 2>&1 &
	pg=$!
	vsock_host_send '{ echo "CONNECT 5000"; cat "$tmp/vs-send"; } |
		timeout 30 socat -t 30 - UNIX-CONNECT:"$sock" >"$tmp/vs-ok" && grep -q "^OK [0-9]" "$tmp/vs-ok"' "$pg"
	# On a failure neither end may be left waiting for the other.
	[ -z "$why" ] || kill "$pg" "$pl" 2>/dev/null
	wait "$pl"
	vsock_guest_ended "$pg"
	[ -n "$why" ] || why=$(vsock_check "$tmp/vs-recv")
	if [ -n "$why" ]; then
		fail vsock_socket_connect_protocol_both_ways "$why" "$tmp/vs-guest"
	elif [ -e "$sock" ]; then
		fail vsock_socket_connect_protocol_both_ways "$sock left after the guest ended"
	else
		pass vsock_socket_connect_protocol_both_ways
	fi
}

# Seconds since boot with hundredths, from /proc/uptime (busybox date has no %N).
uptime_cs() {
	awk '{ printf "%d\n", $1 * 100 }' /proc/uptime
}

# nkvm stop: Ctrl-Alt-Del reaches the guest's init, which logs an orderly power-off; the ext4
# on a qcow2 disk that the guest wrote and left mounted is clean for qemu-img and e2fsck after.
test_stop_powers_off_and_qcow2_checks_clean() {
	need qemu-img stop_powers_off_and_qcow2_checks_clean || return
	need e2fsck stop_powers_off_and_qcow2_checks_clean || return
	qemu-img create -q -f qcow2 "$tmp/st.qcow2" 128M
	"$NKVM" run --name it-stop -d "$tmp/st.qcow2" -- sh -c \
		'mkfs.ext4 -q /dev/vda && mkdir -p /mnt && mount -t ext4 /dev/vda /mnt &&
		 i=0; while [ $i -lt 40 ]; do head -c 65536 /dev/urandom >/mnt/f$i; i=$((i + 1)); done;
		 echo WRITTEN; exec sleep 600' </dev/null >"$tmp/st" 2>&1 &
	ps=$!
	why=""
	wait_for_line "$tmp/st" 180 '^WRITTEN' || why="the guest never wrote its files"
	"$NKVM" stop it-stop >"$tmp/st.stop" 2>&1
	rcs=$?
	wait "$ps"
	rcr=$?
	tr -d '\r' <"$tmp/st" >"$tmp/st.raw0"
	mv "$tmp/st.raw0" "$tmp/st"
	cat "$tmp/st.stop" >>"$tmp/st"
	qemu-img check "$tmp/st.qcow2" >"$tmp/chk" 2>&1
	crc=$?
	qemu-img convert -O raw "$tmp/st.qcow2" "$tmp/st.raw" && e2fsck -fn "$tmp/st.raw" >>"$tmp/chk" 2>&1
	frc=$?
	rm -f "$tmp/st.raw" "$tmp/st.qcow2"
	cat "$tmp/chk" >>"$tmp/st"
	if [ -n "$why" ]; then
		fail stop_powers_off_and_qcow2_checks_clean "$why" "$tmp/st"
	elif [ "$rcs" -ne 0 ] || [ "$rcr" -ne 0 ]; then
		fail stop_powers_off_and_qcow2_checks_clean "stop status $rcs, run status $rcr; want 0, 0" "$tmp/st"
	elif ! has_line "$tmp/st" "nkvm-init: power button: stopping processes" ||
		! has_line "$tmp/st" "nkvm-init: power button: filesystems synced and unmounted, powering off"; then
		fail stop_powers_off_and_qcow2_checks_clean "init did not log an orderly power-off" "$tmp/st"
	elif [ "$crc" -ne 0 ] || [ "$frc" -ne 0 ]; then
		fail stop_powers_off_and_qcow2_checks_clean "qemu-img check $crc, e2fsck $frc" "$tmp/st"
	else
		pass stop_powers_off_and_qcow2_checks_clean
	fi
}

# A guest whose Ctrl-Alt-Del goes to a shell that ignores SIGINT: stop --timeout 3 ends it
# itself, within 2 s of the timeout; --force ends another guest at once.
test_stop_force_ends_guest_ignoring_power_button() {
	"$NKVM" run --name it-deaf -- sh -c \
		'trap "" INT; echo $$ >/proc/sys/kernel/cad_pid && echo DEAF; while :; do sleep 1; done' \
		</dev/null >"$tmp/deaf" 2>&1 &
	pd=$!
	"$NKVM" run --name it-force -- sleep 600 </dev/null >"$tmp/force" 2>&1 &
	pf=$!
	why=""
	wait_for_line "$tmp/deaf" 180 '^DEAF' || why="the deaf guest never started"
	t0=$(uptime_cs)
	"$NKVM" stop it-deaf --timeout 3 >"$tmp/deaf.stop" 2>&1
	rcs=$?
	t1=$(uptime_cs)
	wait "$pd"
	rcd=$?
	n=0
	while [ $n -lt 180 ] && ! "$NKVM" list 2>/dev/null | grep -q '^it-force '; do
		sleep 1
		n=$((n + 1))
	done
	t2=$(uptime_cs)
	"$NKVM" stop --force it-force >"$tmp/force.stop" 2>&1
	rcf=$?
	t3=$(uptime_cs)
	wait "$pf"
	rcff=$?
	cat "$tmp/deaf.stop" >>"$tmp/deaf"
	cat "$tmp/force" "$tmp/force.stop" >>"$tmp/deaf"
	took=$((t1 - t0))
	if [ -n "$why" ]; then
		fail stop_force_ends_guest_ignoring_power_button "$why" "$tmp/deaf"
	elif [ "$rcs" -ne 0 ] || [ "$rcd" -ne 143 ]; then
		fail stop_force_ends_guest_ignoring_power_button "stop status $rcs, run status $rcd; want 0, 143" "$tmp/deaf"
	elif [ "$took" -lt 300 ] || [ "$took" -gt 500 ]; then
		fail stop_force_ends_guest_ignoring_power_button "stop --timeout 3 took $took cs" "$tmp/deaf"
	elif ! grep -q 'it-deaf: not powered off after 3 s; ending it' "$tmp/deaf.stop" ||
		grep -q 'power button: stopping' "$tmp/deaf"; then
		fail stop_force_ends_guest_ignoring_power_button "the guest did not ignore it, or stop did not say" "$tmp/deaf"
	elif [ "$rcf" -ne 0 ] || [ "$rcff" -ne 143 ] || [ $((t3 - t2)) -gt 200 ]; then
		fail stop_force_ends_guest_ignoring_power_button "--force: status $rcf, run $rcff, $((t3 - t2)) cs" "$tmp/deaf"
	else
		pass stop_force_ends_guest_ignoring_power_button
	fi
}

# stat's per-disk counters: they move by what the guest reads and writes, with no errors.
test_stat_disk_counters_move_after_guest_io() {
	truncate -s 16M "$tmp/io.raw"
	"$NKVM" run --name it-io -d "$tmp/io.raw" -- sh -c \
		'echo READY; sleep 4; dd if=/dev/vda of=/dev/null bs=64k count=64 2>/dev/null;
		 dd if=/dev/zero of=/dev/vda bs=64k count=16 conv=fsync 2>/dev/null; echo DONE;
		 exec sleep 600' </dev/null >"$tmp/io" 2>&1 &
	pi=$!
	why=""
	wait_for_line "$tmp/io" 180 '^READY' || why="the guest never started"
	"$NKVM" stat it-io --json >"$tmp/io.0" 2>&1
	wait_for_line "$tmp/io" 60 '^DONE' || why="${why:-the guest did no I/O}"
	"$NKVM" stat it-io --json >"$tmp/io.1" 2>&1
	"$NKVM" stat it-io >"$tmp/io.h" 2>&1
	"$NKVM" stop --force it-io >/dev/null 2>&1
	wait "$pi"
	rm -f "$tmp/io.raw"
	cat "$tmp/io.0" "$tmp/io.1" "$tmp/io.h" >>"$tmp/io"
	c() { jq -r ".counters.disk0.$2" "$tmp/io.$1"; }
	if [ -n "$why" ]; then
		fail stat_disk_counters_move_after_guest_io "$why" "$tmp/io"
	elif [ "$(($(c 1 read_bytes) - $(c 0 read_bytes)))" -lt 4194304 ] ||
		[ "$(($(c 1 write_bytes) - $(c 0 write_bytes)))" -lt 1048576 ] ||
		[ "$(c 1 requests)" -le "$(c 0 requests)" ] || [ "$(c 1 errors)" != 0 ] ||
		[ "$(c 1 in_flight)" != 0 ]; then
		fail stat_disk_counters_move_after_guest_io "disk0's counters did not move as the I/O" "$tmp/io"
	elif ! grep -q '^disk0: requests=[0-9]* read_bytes=' "$tmp/io.h"; then
		fail stat_disk_counters_move_after_guest_io "nkvm stat shows no disk0 line" "$tmp/io"
	else
		pass stat_disk_counters_move_after_guest_io
	fi
}

# nkvm debug: registers of both vCPUs (the guest runs on after), and Alt-SysRq-h on the
# guest's keyboard makes its kernel print the SysRq help on the console.
test_debug_prints_registers_and_sends_sysrq() {
	"$NKVM" run --name it-dbg -c 2 -- sh -c 'echo READY; exec sleep 600' </dev/null >"$tmp/dbg" 2>&1 &
	pg=$!
	why=""
	wait_for_line "$tmp/dbg" 180 '^READY' || why="the guest never started"
	"$NKVM" debug it-dbg >"$tmp/dbg.r" 2>&1
	rcr=$?
	"$NKVM" debug it-dbg --sysrq h >"$tmp/dbg.s" 2>&1
	rcs=$?
	wait_for_line "$tmp/dbg" 30 'sysrq: HELP' || why="${why:-no SysRq help on the console}"
	"$NKVM" debug it-dbg --sysrq '!' >"$tmp/dbg.bad" 2>&1
	rcb=$?
	"$NKVM" stat it-dbg >"$tmp/dbg.st" 2>&1
	"$NKVM" stop --force it-dbg >/dev/null 2>&1
	wait "$pg"
	cat "$tmp/dbg.r" "$tmp/dbg.s" "$tmp/dbg.bad" "$tmp/dbg.st" >>"$tmp/dbg"
	if [ -n "$why" ]; then
		fail debug_prints_registers_and_sends_sysrq "$why" "$tmp/dbg"
	elif [ "$rcr" -ne 0 ] || ! grep -q '^vcpu0:$' "$tmp/dbg.r" || ! grep -q '^vcpu1:$' "$tmp/dbg.r" ||
		[ "$(grep -c '^  rip=0x[0-9a-f]* rsp=0x' "$tmp/dbg.r")" -ne 2 ] ||
		[ "$(grep -c ' cr3=0x[0-9a-f]*' "$tmp/dbg.r")" -ne 2 ]; then
		fail debug_prints_registers_and_sends_sysrq "registers: status $rcr" "$tmp/dbg"
	elif [ "$rcs" -ne 0 ] || [ "$rcb" -ne 2 ]; then
		fail debug_prints_registers_and_sends_sysrq "sysrq: status $rcs, bad key $rcb; want 0, 2" "$tmp/dbg"
	elif ! grep -q '^state: *Running' "$tmp/dbg.st"; then
		fail debug_prints_registers_and_sends_sysrq "the guest was left paused" "$tmp/dbg"
	else
		pass debug_prints_registers_and_sends_sysrq
	fi
}

# run --detach prints the name and returns; nkvm console shows what the guest wrote before it
# attached and takes input (Ctrl-A d detaches); a second console then gets only what was
# written while none was attached; a console already attached turns another away.
test_detach_console_replays_output_and_takes_input() {
	need mkfifo detach_console_replays_output_and_takes_input || return
	"$NKVM" run --detach --name it-det -- sh -c \
		'echo BEFORE-ATTACH; read l; echo "got:$l"; sleep 3; echo WHILE-DETACHED; exec sleep 600' \
		</dev/null >"$tmp/det.run" 2>&1
	rcd=$?
	why=""
	rm -f "$tmp/det.in"
	mkfifo "$tmp/det.in"
	: >"$tmp/det"
	: >"$tmp/det2"
	"$NKVM" console it-det <"$tmp/det.in" >"$tmp/det" 2>&1 &
	pa=$!
	exec 3>"$tmp/det.in"
	wait_for_line "$tmp/det" 180 'BEFORE-ATTACH' || why="no output before attaching"
	"$NKVM" console it-det </dev/null >"$tmp/det.busy" 2>&1
	printf 'hello\n' >&3
	[ -n "$why" ] || wait_for_line "$tmp/det" 60 'got:hello' || why="the input did not reach the guest"
	printf '\001d' >&3
	exec 3>&-
	wait "$pa"
	rca=$?
	sleep 6
	"$NKVM" console it-det </dev/null >"$tmp/det2" 2>&1 &
	pb=$!
	[ -n "$why" ] || wait_for_line "$tmp/det2" 30 'WHILE-DETACHED' || why="nothing kept while detached"
	"$NKVM" stop --force it-det >"$tmp/det.stop" 2>&1
	rcs=$?
	wait "$pb"
	rcb=$?
	cat "$tmp/det.run" "$tmp/det.busy" "$tmp/det2" "$tmp/det.stop" >>"$tmp/det"
	if [ -n "$why" ]; then
		fail detach_console_replays_output_and_takes_input "$why" "$tmp/det"
	elif [ "$rcd" -ne 0 ] || [ "$(cat "$tmp/det.run")" != it-det ]; then
		fail detach_console_replays_output_and_takes_input "run --detach: status $rcd" "$tmp/det"
	elif [ "$rca" -ne 0 ] || [ "$rcb" -ne 0 ] || [ "$rcs" -ne 0 ]; then
		fail detach_console_replays_output_and_takes_input "console $rca, $rcb, stop $rcs" "$tmp/det"
	elif grep -q BEFORE-ATTACH "$tmp/det2"; then
		fail detach_console_replays_output_and_takes_input "the second console got old output again" "$tmp/det"
	elif ! grep -q 'another console is attached' "$tmp/det.busy"; then
		fail detach_console_replays_output_and_takes_input "a second console was not turned away" "$tmp/det"
	else
		pass detach_console_replays_output_and_takes_input
	fi
}

# --- Landlock and --user (issue 19; NKVM_HOOKS is set with the sandbox tests below) ---
# The test build's FUSE server opens "/" on a LOOKUP of open-outside (src/fs/fs_ops_entry.c):
# with the sandbox on, Landlock refuses it (EACCES reaches the guest's cat) and the guest goes
# on reading the share; with it off, the open works and the lookup says ENOENT.
test_landlock_open_outside_is_eacces_guest_runs_on() {
	d=$tmp/ll
	rm -rf "$d" && mkdir -p "$d" && echo inside >"$d/in.txt"
	save=$NKVM
	NKVM=$NKVM_HOOKS
	export NKVM_TEST_HOOK=fs-queue:open-outside
	run_guest "$tmp/ll-on" --share "$d,tag=ll" -- sh -c \
		'cat /mnt/ll/open-outside; echo "after: $(cat /mnt/ll/in.txt)"'
	rc_on=$rc
	run_guest "$tmp/ll-off" --sandbox=off --share "$d,tag=ll" -- sh -c \
		'cat /mnt/ll/open-outside; echo "after: $(cat /mnt/ll/in.txt)"'
	rc_off=$rc
	unset NKVM_TEST_HOOK
	NKVM=$save
	if [ ! -x "$NKVM_HOOKS" ]; then
		fail landlock_open_outside_is_eacces_guest_runs_on "no $NKVM_HOOKS (make build/nkvm-hooks)"
	elif [ "$rc_on" -ne 0 ] || ! grep -q 'open-outside.*Permission denied' "$tmp/ll-on" ||
		! has_line "$tmp/ll-on" "after: inside"; then
		fail landlock_open_outside_is_eacces_guest_runs_on "sandbox on: status $rc_on" "$tmp/ll-on"
	elif [ "$rc_off" -ne 0 ] || ! grep -q 'open-outside.*No such file' "$tmp/ll-off" ||
		! has_line "$tmp/ll-off" "after: inside"; then
		fail landlock_open_outside_is_eacces_guest_runs_on "sandbox off: status $rc_off" "$tmp/ll-off"
	else
		pass landlock_open_outside_is_eacces_guest_runs_on
	fi
}

# --user without root, and a user that does not exist: one line each, status 2.
test_user_refused_without_root_or_unknown() {
	"$FS_HELPER" runas 65534:65534 "$NKVM" run --user 1:1 -- true </dev/null >"$tmp/ur.out" \
		2>"$tmp/ur.err"
	rc_nr=$?
	"$NKVM" run --user no-such-user-nkvm -- true </dev/null >"$tmp/uu.out" 2>"$tmp/uu.err"
	rc_nu=$?
	if [ "$rc_nr" -ne 2 ] || [ "$(wc -l <"$tmp/ur.err")" -ne 1 ] ||
		! grep -q '^nkvm: --user 1:1: only root can change to another user' "$tmp/ur.err"; then
		fail user_refused_without_root_or_unknown "not root: status $rc_nr" "$tmp/ur.err"
	elif [ "$rc_nu" -ne 2 ] || [ "$(wc -l <"$tmp/uu.err")" -ne 1 ] ||
		! grep -q '^nkvm: --user no-such-user-nkvm: no such user' "$tmp/uu.err"; then
		fail user_refused_without_root_or_unknown "unknown user: status $rc_nu" "$tmp/uu.err"
	else
		pass user_refused_without_root_or_unknown
	fi
}

# Root starts a guest with a TAP NIC (vhost-net where the test host has it) and a share, and
# --user 65534:65534: the running nkvm has that uid and no capability, the guest's file in the
# share is the user's, vm.info answers root (through its link in /run/nkvm) and the user (nkvm
# list as the user), the user's nkvm stop ends it, and nothing is left behind.
test_user_runs_guest_as_that_user() {
	u=65534
	d=$tmp/user-share
	rm -rf "$d" && mkdir -p "$d" && chown "$u:$u" "$d"
	net_start "$tmp/user" --user "$u:$u" --name it-user \
		-n "tap,host_ip=$NET_HOST/24,guest_ip=$NET_GUEST/24" --share "$d,tag=us" -- sh -c \
		'echo written >/mnt/us/by-guest && echo WROTE; ip link show eth0 | grep -q UP &&
		echo NIC-UP; sleep 600'
	why=
	net_wait_line "$tmp/user.raw" WROTE 240 || why="the guest did not write its file"
	pid=$("$NKVM" list --json 2>/dev/null | jq -r '.[] | select(.name == "it-user") | .pid')
	status=$(cat "/proc/${pid:-0}/status" 2>/dev/null)
	ids=$(printf '%s\n' "$status" | sed -n 's/^Uid:[[:space:]]*//p' | tr -s '\t ' ' ')
	cap=$(printf '%s\n' "$status" | sed -n 's/^CapEff:[[:space:]]*//p')
	"$NKVM" stat it-user >"$tmp/user.stat" 2>&1 || why=${why:-"root's nkvm stat: status $?"}
	env -u XDG_RUNTIME_DIR "$FS_HELPER" runas "$u:$u" "$NKVM" list >"$tmp/user.list" 2>&1
	grep -q '^it-user ' "$tmp/user.list" || why=${why:-"the user's nkvm list lacks it-user"}
	env -u XDG_RUNTIME_DIR "$FS_HELPER" runas "$u:$u" "$NKVM" stop it-user \
		>"$tmp/user.stop" 2>&1 || why=${why:-"the user's nkvm stop: status $?"}
	net_wait
	"$NKVM" list >"$tmp/user.after" 2>&1
	owner=$(stat -c %u:%g "$d/by-guest" 2>/dev/null)
	if [ -n "$why" ]; then
		cat "$tmp/user.stat" "$tmp/user.list" "$tmp/user.stop" >>"$tmp/user"
		fail user_runs_guest_as_that_user "$why" "$tmp/user"
	elif [ "$ids" != "$u $u $u $u" ] || [ "$cap" != 0000000000000000 ]; then
		fail user_runs_guest_as_that_user "pid ${pid:-none}: Uid $ids, CapEff $cap" "$tmp/user"
	elif [ "$owner" != "$u:$u" ] || ! has_line "$tmp/user" NIC-UP; then
		fail user_runs_guest_as_that_user "share file owner ${owner:-none}, or no NIC" "$tmp/user"
	elif [ "$rc" -ne 0 ] || grep -q '^it-user ' "$tmp/user.after" || [ -e "/tmp/nkvm-$u/it-user.sock" ] ||
		[ -L /run/nkvm/it-user.sock ] || [ -n "$(net_taps)" ]; then
		fail user_runs_guest_as_that_user "after stop: status $rc, or a socket, link or TAP left" \
			"$tmp/user"
	else
		pass user_runs_guest_as_that_user
	fi
}

# --- the sandbox (issue 19): each thread type's filter traps what its list does not allow ---

# The test build (make build/nkvm-hooks): NKVM_TEST_HOOK=TYPE:forbidden makes one thread of that
# type make a call outside its list (ptrace) once it is confined.
NKVM_HOOKS=${NKVM_HOOKS:-build/nkvm-hooks}
SANDBOX_REPORT="made forbidden system call ptrace (101)"

# sandbox_case NAME TYPE [run arguments]: with the hook in TYPE, nkvm ends with status 159 and
# one report line naming TYPE and ptrace; with --sandbox=off the same run survives (the guest's
# command runs, its status 0 returns) and nkvm says the sandbox is off.
sandbox_case() {
	name=$1
	type=$2
	shift 2
	[ -x "$NKVM_HOOKS" ] || {
		fail "$name" "no $NKVM_HOOKS: make build/nkvm-hooks"
		return
	}
	saved_nkvm=$NKVM
	NKVM=$NKVM_HOOKS
	export NKVM_TEST_HOOK="$type:forbidden"
	run_guest "$tmp/sb-on" "$@" -- sh -c 'echo sandbox-guest-ran'
	rc_on=$rc
	run_guest "$tmp/sb-off" --sandbox=off "$@" -- sh -c 'echo sandbox-guest-ran'
	rc_off=$rc
	unset NKVM_TEST_HOOK
	NKVM=$saved_nkvm
	if [ "$rc_on" -ne 159 ] || ! has_line "$tmp/sb-on" "nkvm: sandbox: thread $type $SANDBOX_REPORT"; then
		fail "$name" "sandbox on: status $rc_on (want 159) or no report naming $type" "$tmp/sb-on"
	elif [ "$rc_off" -ne 0 ] || ! has_line "$tmp/sb-off" sandbox-guest-ran ||
		! grep -q '^nkvm: sandbox: off' "$tmp/sb-off"; then
		fail "$name" "--sandbox=off: status $rc_off, or the guest did not run" "$tmp/sb-off"
	else
		pass "$name"
	fi
}

# A sandbox kill on a terminal: the report, status 159, and the terminal cooked again (the
# SIGSYS handler's kill hook, term_restore), as after a normal exit.
test_sandbox_kill_restores_terminal() {
	[ -x "$NKVM_HOOKS" ] || {
		fail sandbox_kill_restores_terminal "no $NKVM_HOOKS: make build/nkvm-hooks"
		return
	}
	(sleep 30) | NKVM_TEST_HOOK=vcpu:forbidden timeout 300 script -qec \
		"$NKVM_HOOKS run -- sleep 600; echo nkvm-status=\$?; stty -a" /dev/null >"$tmp/o.raw" 2>&1
	rc=$?
	tr -d '\r' <"$tmp/o.raw" >"$tmp/o"
	if [ "$rc" -eq 0 ] && has_line "$tmp/o" nkvm-status=159 &&
		grep -q "nkvm: sandbox: thread vcpu $SANDBOX_REPORT" "$tmp/o" &&
		grep -q -- " icanon" "$tmp/o" && grep -q -- " echo " "$tmp/o" && ! grep -q -- "-icanon" "$tmp/o"; then
		pass sandbox_kill_restores_terminal
	else
		fail sandbox_kill_restores_terminal "status $rc: want nkvm's 159, its report, a cooked terminal" "$tmp/o"
	fi
}

test_sandbox_vcpu_forbidden_call_ends_nkvm() {
	sandbox_case sandbox_vcpu_forbidden_call_ends_nkvm vcpu
}

test_sandbox_main_forbidden_call_ends_nkvm() {
	sandbox_case sandbox_main_forbidden_call_ends_nkvm main
}

# The default balloon's DRIVER_OK and MSI-X routes are the transport worker's work.
test_sandbox_virtio_worker_forbidden_call_ends_nkvm() {
	sandbox_case sandbox_virtio_worker_forbidden_call_ends_nkvm virtio-worker
}

test_sandbox_balloon_queue_forbidden_call_ends_nkvm() {
	sandbox_case sandbox_balloon_queue_forbidden_call_ends_nkvm balloon-queue
}

test_sandbox_rng_queue_forbidden_call_ends_nkvm() {
	sandbox_case sandbox_rng_queue_forbidden_call_ends_nkvm rng-queue --rng
}

test_sandbox_console_queue_forbidden_call_ends_nkvm() {
	sandbox_case sandbox_console_queue_forbidden_call_ends_nkvm console-queue --console virtio
}

test_sandbox_blk_threads_forbidden_calls_end_nkvm() {
	truncate -s 16M "$tmp/sb.raw"
	sandbox_case sandbox_blk_queue_forbidden_call_ends_nkvm blk-queue -d "$tmp/sb.raw"
	sandbox_case sandbox_blk_threads_forbidden_call_ends_nkvm blk-threads \
		-d "$tmp/sb.raw,engine=threads"
	sandbox_case sandbox_blk_aio_forbidden_call_ends_nkvm blk-aio \
		-d "$tmp/sb.raw,engine=aio,cache=none"
	sandbox_case sandbox_blk_uring_forbidden_call_ends_nkvm blk-uring \
		-d "$tmp/sb.raw,engine=io_uring"
}

test_sandbox_net_threads_forbidden_calls_end_nkvm() {
	sandbox_case sandbox_net_queue_forbidden_call_ends_nkvm net-queue -n user
	sandbox_case sandbox_net_user_forbidden_call_ends_nkvm net-user -n user
}

test_sandbox_fs_queue_forbidden_call_ends_nkvm() {
	mkdir -p "$tmp/sb-share"
	sandbox_case sandbox_fs_queue_forbidden_call_ends_nkvm fs-queue --share "$tmp/sb-share,tag=sb"
}

test_sandbox_vsock_threads_forbidden_calls_end_nkvm() {
	sandbox_case sandbox_vsock_forbidden_call_ends_nkvm vsock --vsock 9,socket="$tmp/sb-vs.sock"
	sandbox_case sandbox_vsock_queue_forbidden_call_ends_nkvm vsock-queue \
		--vsock 9,socket="$tmp/sb-vs.sock"
}

# The API's thread confines itself at its first connection, which nkvm makes itself once set-up
# is done (so the report comes at start); `nkvm stat` must work with the sandbox off.
sandbox_api_run() {
	out=$1
	shift
	: >"$out.raw"
	"$NKVM_HOOKS" run --name it-sb-api "$@" -- sh -c \
		'echo guest-up; sleep 20; echo sandbox-guest-ran' </dev/null >"$out.raw" 2>&1 &
	pa=$!
	wait_for_line "$out.raw" 180 '^guest-up|^nkvm: sandbox: thread' &&
		"$NKVM" stat it-sb-api >"$out.stat" 2>&1
	wait "$pa"
	rc=$?
	tr -d '\r' <"$out.raw" >"$out"
}

test_sandbox_api_forbidden_call_ends_nkvm() {
	[ -x "$NKVM_HOOKS" ] || {
		fail sandbox_api_forbidden_call_ends_nkvm "no $NKVM_HOOKS: make build/nkvm-hooks"
		return
	}
	export NKVM_TEST_HOOK=api:forbidden
	sandbox_api_run "$tmp/sba-on"
	rc_on=$rc
	sandbox_api_run "$tmp/sba-off" --sandbox=off
	rc_off=$rc
	unset NKVM_TEST_HOOK
	if [ "$rc_on" -ne 159 ] || ! has_line "$tmp/sba-on" "nkvm: sandbox: thread api $SANDBOX_REPORT"; then
		fail sandbox_api_forbidden_call_ends_nkvm "sandbox on: status $rc_on (want 159)" "$tmp/sba-on"
	elif [ "$rc_off" -ne 0 ] || ! has_line "$tmp/sba-off" sandbox-guest-ran ||
		! grep -q '^state:' "$tmp/sba-off.stat"; then
		fail sandbox_api_forbidden_call_ends_nkvm "--sandbox=off: status $rc_off" "$tmp/sba-off"
	else
		pass sandbox_api_forbidden_call_ends_nkvm
	fi
}

all_tests="test_bad_input test_command_output_and_status test_command_output_is_clean \
	test_exit_status_propagates test_missing_command_is_127 test_arguments_survive_quoting \
	test_kernel_version test_nproc_matches_cpus test_every_cpu_online test_tsc_deadline_timer \
	test_stats_report_exits_and_monitor_overhead \
	test_memtotal_matches_mem \
	test_memory_above_4g test_params_reach_cmdline test_pci_host_bridge_found test_timers_tick \
	test_stdin_reaches_guest test_reboot_ends_cleanly test_poweroff_ends_cleanly \
	test_sigterm_stops_nkvm test_interactive_shell_on_terminal test_ctrl_a_x_quits \
	test_terminal_restored_after_exit test_blk_size_serial_and_queues test_blk_data_both_ways \
	test_blk_readonly_refuses_writes test_blk_flush_reaches_file test_blk_discard_punches_holes \
	test_blk_two_disks test_blk_image_locked_by_another_nkvm test_blk_bad_input \
	test_blk_probed_raw_refuses_qcow2_header \
	test_rng_output_does_not_repeat test_virtio_intx_fallback test_virtio_driver_rebind \
	test_blk_ext4_made_in_guest_checks_clean_on_host test_blk_fio_verify_one_queue_per_vcpu \
	test_blk_root_on_disk test_console_on_hvc0 test_qcow2_ext4_in_guest_checks_clean \
	test_qcow2_overlay_on_raw_base test_qcow2_overlay_fs_over_populated_base \
	test_engines_verify_and_discard test_enospc_reaches_guest_as_ioerr \
	test_list_shows_two_named_guests test_pause_stops_counting_and_resume_continues \
	test_control_commands_without_guest test_balloon_takes_memory_and_gives_it_back \
	test_net_bad_options test_net_no_nic_no_driver_lo_up test_net_user_fetches_64m_from_host \
	test_net_user_hostfwd_both_ways test_net_tap_vhost_on test_net_tap_vhost_off \
	test_net_tap_two_queues test_net_tap_gone_after_kill_9 \
	test_vsock_vhost_both_ways test_vsock_socket_connect_protocol_both_ways \
	test_fs_modules_on_demand_and_bad_input test_fs_share_tree_and_guest_changes \
	test_fs_share_ro_refuses_each_change test_fs_root_runs_script_and_status_returns \
	test_fs_escapes_fail_and_canary_untouched test_fs_guest_cannot_exceed_handle_bound \
	test_stop_powers_off_and_qcow2_checks_clean \
	test_stop_force_ends_guest_ignoring_power_button test_stat_disk_counters_move_after_guest_io \
	test_debug_prints_registers_and_sends_sysrq test_detach_console_replays_output_and_takes_input \
	test_pvh_vmlinux_smp_memory_cmdline_initrd_status test_bzimage_with_k_boots_as_bzimage \
	test_pvh_bad_elf_kernels \
	test_lean_disk_driver_only_with_a_disk test_lean_each_device_gets_its_modules \
	test_landlock_open_outside_is_eacces_guest_runs_on test_user_refused_without_root_or_unknown \
	test_user_runs_guest_as_that_user \
	test_sandbox_vcpu_forbidden_call_ends_nkvm test_sandbox_kill_restores_terminal \
	test_sandbox_main_forbidden_call_ends_nkvm \
	test_sandbox_virtio_worker_forbidden_call_ends_nkvm \
	test_sandbox_balloon_queue_forbidden_call_ends_nkvm test_sandbox_rng_queue_forbidden_call_ends_nkvm \
	test_sandbox_console_queue_forbidden_call_ends_nkvm test_sandbox_blk_threads_forbidden_calls_end_nkvm \
	test_sandbox_net_threads_forbidden_calls_end_nkvm test_sandbox_fs_queue_forbidden_call_ends_nkvm \
	test_sandbox_vsock_threads_forbidden_calls_end_nkvm test_sandbox_api_forbidden_call_ends_nkvm"
if [ "${1:-}" = --list ]; then
	echo $all_tests
	exit 0
fi

echo "integration: nkvm $("$NKVM" version), kernel $(uname -r) on $(grep -c ^processor /proc/cpuinfo) CPUs"
for t in ${TESTS:-$all_tests}; do
	# The runner resumes from here if the test host freezes (tests/integration/run).
	echo "-- $t"
	"$t"
done
[ -n "$failures" ] && echo "failed:$failures"
echo "integration: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
