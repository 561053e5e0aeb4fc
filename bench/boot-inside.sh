#!/usr/bin/env bash
# The measuring half of bench/boot.sh; runs where /dev/kvm works (host or nested test host).
# Usage: bench/boot-inside.sh RUNS INITRD
set -uo pipefail
runs=$1
initrd=$2
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
# shellcheck source=bench/lib.sh
. bench/lib.sh
append=$NKVM_APPEND
mem=256
# shellcheck disable=SC2054 # the commas are inside QEMU option values
qemu_common=(-enable-kvm -cpu host -m "$mem" -smp 1 -nographic -nodefaults -no-reboot
	-serial stdio -kernel "$kernel" -initrd "$initrd" -append "$append"
	-device isa-debug-exit,iobase=0xf4,iosize=0x01)
declare -A cmd=(
	[nkvm]="./nkvm run -k $kernel -i $initrd -m ${mem}M -c 1"
	[qemu-pc]="qemu-system-x86_64 -M pc ${qemu_common[*]@Q}"
	[qemu-microvm]="qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,isa-serial=on ${qemu_common[*]@Q}"
)
out=$(mktemp -d)

# measure NAME: one boot; appends "ready_ms exit_ms" (or "fail") to $out/NAME
measure() {
	local name=$1 t0 ready="" line
	t0=$EPOCHREALTIME
	while IFS= read -r line; do
		if [[ -z $ready && $line == *BENCH-READY* ]]; then
			ready=$EPOCHREALTIME
		fi
		[[ $line == nkvm:\ stats:* ]] && echo "${line##*overhead_kib=}" >>"$out/$name.rss"
	done < <(NKVM_STATS=1 timeout 120 bash -c "${cmd[$name]}" 2>&1 </dev/null)
	local t1=$EPOCHREALTIME
	if [[ -z $ready ]]; then
		echo fail >>"$out/$name"
		return
	fi
	echo "$(ms "$t0" "$ready") $(ms "$t0" "$t1")" >>"$out/$name"
}

ms() { echo $(( (${2/./} - ${1/./}) / 1000 )); }


echo "bench: $runs boots each of ${!cmd[*]}, interleaved; kernel $(cat "${kernel%/*}/kernel-version")" >&2
measure qemu-microvm
if grep -q fail "$out/qemu-microvm"; then
	echo "bench: qemu -M microvm did not reach init in 120 s; left out" >&2
	unset 'cmd[qemu-microvm]'
fi
rm -f "$out/qemu-microvm"
for ((i = 0; i < runs; i++)); do
	for name in nkvm qemu-pc qemu-microvm; do
		[[ -n ${cmd[$name]:-} ]] && measure "$name"
	done
done

nkvm_ready=$(awk '$1 != "fail" { print $1 }' "$out/nkvm" | median)
nkvm_exit=$(awk '$1 != "fail" { print $2 }' "$out/nkvm" | median)
echo
echo "| VMM | boots | failed | launch → init (median ms) | launch → exit (median ms) | nkvm ÷ this (init, exit) |"
echo "|---|---|---|---|---|---|"
for name in nkvm qemu-pc qemu-microvm; do
	[[ -f $out/$name ]] || continue
	r=$(awk '$1 != "fail" { print $1 }' "$out/$name" | median)
	e=$(awk '$1 != "fail" { print $2 }' "$out/$name" | median)
	n=$(grep -vc fail "$out/$name")
	f=$(grep -c fail "$out/$name")
	ratio=$(awk -v a="$nkvm_ready" -v b="$r" -v c="$nkvm_exit" -v d="$e" \
		'BEGIN { if (b > 0 && d > 0) printf "%.2f, %.2f", a / b, c / d; else print "-" }')
	echo "| $name | $n | $f | $r | $e | $ratio |"
done
echo
echo "nkvm monitor overhead (peak RSS − guest RAM touched), median: $(median <"$out/nkvm.rss") KiB"
echo "raw (ready_ms exit_ms per boot):"
for name in nkvm qemu-pc qemu-microvm; do
	[[ -f $out/$name ]] && echo "  $name: $(tr '\n' ';' <"$out/$name")"
done
rm -rf "$out"
