#!/bin/bash
# tests/nested/resets, inside the test host: ROUNDS x (nkvm, QEMU) on the same guest and disks.
# The disks live on ext4 (the test host's tmpfs refuses O_DIRECT, which aio and cache=none need).
rounds=$1 initrd=$2
t=/scratch
truncate -s 2G /scratch.img
mkfs.ext4 -q -E lazy_itable_init=1 /scratch.img
mkdir -p $t
mount -o loop /scratch.img $t
echo "npt: the test host's kvm_amd has npt=$(cat /sys/module/kvm_amd/parameters/npt)"
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
# KVM's own trace of exits and injected events, whose last lines are shown for a run that failed:
# on AMD the registers at a triple fault are gone, this is what is left. RESETS_TRACE=0: off (it
# slows every exit, which may hide what it looks for).
tracing=/sys/kernel/tracing
mount -t tracefs nodev $tracing 2>/dev/null
if [[ ${RESETS_TRACE:-1} == 1 && -w $tracing/events/kvm/enable ]]; then
	echo 4096 >$tracing/buffer_size_kb
	for e in kvm_exit kvm_inj_exception kvm_inj_virq kvm_page_fault kvm_entry; do
		echo 1 >$tracing/events/kvm/$e/enable
	done
else
	tracing=
fi
append="console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd quiet"
for ((i = 1; i <= rounds; i++)); do
	for who in nkvm qemu; do
		rm -f $t/*.raw $t/*.qcow2
		nk=() q=() k=0
		for e in threads aio io_uring; do
			truncate -s 32M $t/$e.raw
			qemu-img create -q -f qcow2 $t/$e.qcow2 32M
			o=engine=$e
			[[ $e == aio ]] && o=$o,cache=none
			case $e in
			threads) qa=aio=threads ;;
			aio) qa=aio=native,cache.direct=on ;;
			io_uring) qa=aio=io_uring ;;
			esac
			for f in raw qcow2; do
				nk+=(-d "$t/$e.$f,$o")
				q+=(-drive "file=$t/$e.$f,format=$f,if=none,id=d$k,$qa" -device "virtio-blk-pci,drive=d$k")
				k=$((k + 1))
			done
		done
		[[ -z $tracing ]] || : >$tracing/trace
		start=$(date +%s)
		if [[ $who == nkvm ]]; then
			timeout 300 ./nkvm run -c 2 -m 512M -i "$initrd" "${nk[@]}" </dev/null >/tmp/out 2>&1
		else
			# -no-reboot: a guest reset (triple fault) ends QEMU, with status 0.
			timeout 300 qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 512M -smp 2 \
				-nographic -nodefaults -no-reboot -serial stdio -kernel "$kernel" \
				-initrd "$initrd" -append "$append" "${q[@]}" </dev/null >/tmp/out 2>&1
		fi
		rc=$?
		res=FAILED
		tr -d '\r' </tmp/out | grep -q RESETS-DONE && res=ok
		echo "run $i $who $res: $(tr -d '\r' </tmp/out | grep -c VERIFIED) of 12 verified, status $rc, $(($(date +%s) - start)) s"
		if [[ $res != ok ]]; then
			tr -d '\r' </tmp/out | tail -3 | sed 's/^/    | /'
			[[ -z $tracing ]] || grep -v '^#' $tracing/trace | tail -40 | sed 's/^/    trace| /'
		fi
	done
done
