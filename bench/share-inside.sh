#!/usr/bin/env bash
# shellcheck disable=SC2317 # run_nkvm, run_qemu and run_disk are called as "run_$w"
# The measuring half of bench/share.sh; runs where /dev/kvm works.
#   share-inside.sh TREE.tar BIG_MIB ROUNDS GUEST_DIR QEMU_INITRD
# Each round boots three guests of the kernel and initramfs in GUEST_DIR, one after the other,
# each running bench/share-jobs.sh with TREE.tar as its read-only /dev/vda: nkvm with
# `--share DIR` (virtio-fs), QEMU with `-virtfs local,security_model=none` (virtio-9p; its
# initramfs QEMU_INITRD carries the command, as bench/lib.sh's cmd_initrd makes it), and nkvm
# with an ext4 on a virtio-blk disk (the scale). The shared directory is new and empty for each.
# Prints every run's lines, then the table (bench/share.sh says what it holds); exits 1 when a
# guest did not get through every step (its row then has fewer runs, or "-").
# Environment: BENCH_SHARE_WHO="nkvm qemu disk" (the columns to run).
set -uo pipefail
tree=$1 mib=$2 rounds=$3 gdir=$4 qinitrd=$5
# shellcheck source=bench/lib.sh
. bench/lib.sh
who=${BENCH_SHARE_WHO:-nkvm qemu disk}
tmp=${TMPDIR:-/tmp}
out=$(mktemp -d)
share=$tmp/nkvm-share-bench
img=$tmp/nkvm-share-bench.img
trap 'rm -rf "$out" "$share" "$img"' EXIT
jobs=$(cat bench/share-jobs.sh)
# Lines are picked out by their shape: QEMU's firmware leaves escape codes in front of the first.
# Line by line as they come (grep would hold them until the guest ends): a step takes minutes.
pick() {
	local l
	while IFS= read -r l; do
		l=${l//$'\r'/}
		[[ $l =~ SHARE-(STEP|FILES|ERROR)\ .*$ ]] && echo "${BASH_REMATCH[0]}"
	done
	return 0
}
# Each guest has its own time limit: a hung one costs a row, not the run.
limit=$((600 + mib))

run_nkvm() {
	timeout "$limit" ./nkvm run -c 2 -m 1G -k "$gdir/vmlinuz" -i "$gdir/initrd.cpio" \
		-d "$tree,format=raw,ro" --share "$share,tag=share,at=/mnt/bench" -- \
		sh -c "$jobs" sh virtiofs "$mib" </dev/null 2>&1
}
run_qemu() {
	timeout "$limit" qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic \
		-nodefaults -no-reboot -serial stdio -kernel "$gdir/vmlinuz" -initrd "$qinitrd" \
		-append "$NKVM_APPEND" \
		-drive "file=$tree,format=raw,if=none,id=t,readonly=on" -device virtio-blk-pci,drive=t \
		-virtfs "local,path=$share,mount_tag=share,security_model=none" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x01 </dev/null 2>&1
}
# The disk holds the tree and the big file with room to spare; sparse, so only what the guest
# writes takes the test host's memory.
run_disk() {
	truncate -s $((mib + 1024))M "$img" &&
		timeout "$limit" ./nkvm run -c 2 -m 1G -k "$gdir/vmlinuz" -i "$gdir/initrd.cpio" \
			-d "$tree,format=raw,ro" -d "$img,format=raw" -- \
			sh -c "$jobs" sh ext4 "$mib" </dev/null 2>&1
	rm -f "$img"
}

for ((r = 1; r <= rounds; r++)); do
	for w in $who; do
		echo "bench: round $r of $rounds: $w" >&2
		rm -rf "$share" && mkdir -p "$share"
		"run_$w" | tee "$out/raw" | pick | tee -a "$out/$w" >&2
		# A guest that did not get to the last step: what it said last, to see why.
		if ! tail -n 1 "$out/$w" 2>/dev/null | grep -q "^SHARE-STEP [a-z0-9]* delete "; then
			tr -d '\r' <"$out/raw" | tail -n 8 | sed "s/^/$w (no result): /" >&2
		fi
	done
done

# med WHO STEP: the median of that step's seconds over the rounds ("-" when none finished).
med() { awk -v s="$2" '$1 == "SHARE-STEP" && $3 == s { print $4 }' "$out/$1" 2>/dev/null | median; }
# ratio A B: A / B to two places, "-" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 && b + 0) ? sprintf("%.2f", a / b) : "-" }'; }

echo
echo "| step (seconds, median of $rounds) | nkvm virtio-fs | QEMU 9p | ext4 on virtio-blk (nkvm) | QEMU 9p ÷ nkvm (× faster) | target |"
echo "|---|---|---|---|---|---|"
results=()
for s in untar find-stat read-all write-big read-big delete; do
	n=$(med nkvm "$s") q=$(med qemu "$s") d=$(med disk "$s")
	case $s in
	write-big | read-big) target=1 ;;
	*) target=2 ;;
	esac
	echo "| $s | $n | $q | $d | $(ratio "$q" "$n") | ≥ $target× |"
	# One line a script can read for each step.
	line="SHARE-RESULT step=$s nkvm=$n qemu=$q disk=$d qemu_over_nkvm=$(ratio "$q" "$n")"
	results+=("$line disk_over_nkvm=$(ratio "$d" "$n") target=$target runs=$rounds big_mib=$mib")
done
echo
printf '%s\n' "${results[@]}"
# The status says whether every guest got through every step.
status=0
for w in $who; do
	echo "files untarred ($w): $(awk '$1 == "SHARE-FILES" { print $3 }' "$out/$w" | sort -u | tr '\n' ' ')"
	if grep -q '^SHARE-ERROR' "$out/$w"; then
		grep -h '^SHARE-ERROR' "$out/$w" | sed "s/^/$w: /"
		status=1
	fi
	[[ $(grep -c "^SHARE-STEP [a-z0-9]* delete " "$out/$w") == "$rounds" ]] || status=1
done
exit $status
