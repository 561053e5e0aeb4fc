#!/usr/bin/env bash
# The measuring half of bench/boot.sh; runs where /dev/kvm works (host or nested test host).
# Usage: bench/boot-inside.sh RUNS INITRD [VMLINUX [NAME:PARAMS[:OPTIONS];...]]
set -uo pipefail
runs=$1
initrd=$2
vmlinux=${3:-}
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
# shellcheck source=bench/lib.sh
. bench/lib.sh
# printk.time=1: dmesg prints the timestamps the breakdown reads (the console stays quiet).
append="$NKVM_APPEND printk.time=1"
mem=256
# shellcheck disable=SC2054 # the commas are inside QEMU option values
qemu_common=(-enable-kvm -cpu host -m "$mem" -smp 1 -nographic -nodefaults -no-reboot
	-serial stdio -initrd "$initrd" -append "$append"
	-device isa-debug-exit,iobase=0xf4,iosize=0x01)
names=(nkvm nkvm-pvh qemu-pc qemu-pc-pvh qemu-microvm)
declare -A cmd=(
	[nkvm]="./nkvm run -k $kernel -i $initrd -m ${mem}M -c 1 -p printk.time=1"
	[qemu-pc]="qemu-system-x86_64 -M pc -kernel $kernel ${qemu_common[*]@Q}"
)
if [[ -n $vmlinux ]]; then
	cmd[nkvm-pvh]="./nkvm run -k $vmlinux -i $initrd -m ${mem}M -c 1 -p printk.time=1"
	cmd[qemu-pc-pvh]="qemu-system-x86_64 -M pc -kernel $vmlinux ${qemu_common[*]@Q}"
	cmd[qemu-microvm]="qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=off,isa-serial=on -kernel $vmlinux ${qemu_common[*]@Q}"
fi
# Variants for measuring one change (bench/boot.sh's BENCH_BASE and BENCH_NKVM).
if [[ -x bench/nkvm-base ]]; then
	names+=(nkvm-base)
	cmd[nkvm-base]="bench/nkvm-base run -k $kernel -i $initrd -m ${mem}M -c 1 -p printk.time=1"
fi
IFS=';' read -ra extra <<<"${4:-}"
for e in "${extra[@]}"; do
	IFS=: read -r n params opts <<<"$e"
	names+=("nkvm-$n")
	cmd[nkvm-$n]="./nkvm run -k $kernel -i $initrd -m ${mem}M -c 1 -p 'printk.time=1 $params' $opts"
done
out=$(mktemp -d)

# ms T0 T1: from one $EPOCHREALTIME to another, in ms
ms() { echo $(((${2/./} - ${1/./}) / 1000)); }
# printk_us LINE: the µs of the printk timestamp "[   12.345678] " in LINE (after any escapes)
printk_us() {
	[[ $1 =~ \[\ *([0-9]+)\.([0-9]{6})\]\  ]] || return
	echo $((10#${BASH_REMATCH[1]} * 1000000 + 10#${BASH_REMATCH[2]}))
}

# measure NAME: one boot; appends to $out/NAME one line of fields in ms (see `cols`), or "fail"
measure() {
	local name=$1 t0 line ready="" end="" mark="" init="" entry="-" rss=""
	t0=$EPOCHREALTIME
	: >"$out/last"
	while IFS= read -r line; do
		line=${line%$'\r'}
		echo "$line" >>"$out/last"
		case $line in
		# (SeaBIOS and the kernel leave terminal escapes before the first line.)
		*BENCH-READY) [[ -z $ready ]] && ready=$EPOCHREALTIME ;;
		*BENCH-END) end=$EPOCHREALTIME ;;
		*\]\ BENCH-MARK) mark=$(printk_us "$line") ;;
		*\]\ Run\ *\ as\ init\ process) init=$(printk_us "$line") ;;
		nkvm:\ stats:*)
			rss=${line##*overhead_kib=}
			rss=${rss%% *}
			[[ $line == *entry_epoch_us=* ]] && entry=${line##*entry_epoch_us=} ;;
		nkvm:\ exit* | nkvm:\ kvm\ exits:*) [[ -f $out/$name.exits ]] || echo "$line" >>"$out/$name.exits.new" ;;
		esac
	done < <(NKVM_STATS=1 timeout 300 bash -c "${cmd[$name]}" 2>&1 </dev/null)
	local t1=$EPOCHREALTIME
	[[ -f $out/$name.exits.new ]] && mv "$out/$name.exits.new" "$out/$name.exits"
	if [[ -z $ready || -z $mark || -z $init || -z $end ]]; then
		echo fail >>"$out/$name"
		echo "bench: $name failed; its last output:" >&2
		grep -E "BENCH|Run /init|panic|nkvm" "$out/last" | tail -n 8 | sed 's/^/bench:   /' >&2
		return
	fi
	[[ -n $rss ]] && echo "$rss" >>"$out/$name.rss"
	# The kernel's clock started at: the mark's arrival less its printk timestamp.
	local t0us=${t0/./} zero=$((${ready/./} - mark))
	[[ $entry != - ]] && entry=$(((entry - t0us) / 1000))
	echo "$entry $(((zero - t0us) / 1000)) $((init / 1000)) $(((mark - init) / 1000))" \
		"$(((zero + init - t0us) / 1000)) $(ms "$t0" "$ready") $(ms "$ready" "$t1")" \
		"$(ms "$t0" "$t1")" >>"$out/$name"
}
cols=("launch → kernel entry" "launch → printk 0" "printk 0 → init" "init → output"
	"launch → init" "launch → output" "output → exit" "launch → exit")

echo "bench: $runs boots each of ${!cmd[*]}, interleaved; kernel $(cat "${kernel%/*}/kernel-version")" >&2
for name in nkvm-pvh qemu-pc-pvh qemu-microvm; do
	[[ -n ${cmd[$name]:-} ]] || continue
	measure "$name"
	if grep -q fail "$out/$name"; then
		echo "bench: $name did not reach the guest's command (in 300 s); left out" >&2
		unset "cmd[$name]"
	fi
	rm -f "$out/$name" "$out/$name.rss"
done
for ((i = 0; i < runs; i++)); do
	for name in "${names[@]}"; do
		[[ -n ${cmd[$name]:-} ]] && measure "$name"
	done
done

# col NAME N: the median of field N of NAME's boots
col() { awk -v n="$2" '$1 != "fail" && $n != "-" { print $n }' "$out/$1" | median; }
echo
echo "Medians of the boots that reached the command, ms:"
echo
printf '| VMM | boots | failed |'
printf ' %s |' "${cols[@]}"
echo
printf '|---|---|---|'
printf -- '---|%.0s' "${cols[@]}"
echo
for name in "${names[@]}"; do
	[[ -f $out/$name ]] || continue
	printf '| %s | %s | %s |' "$name" "$(grep -vc fail "$out/$name")" "$(grep -c fail "$out/$name")"
	for ((c = 1; c <= ${#cols[@]}; c++)); do printf ' %s |' "$(col "$name" "$c")"; done
	echo
done
echo
for n in "${names[@]}"; do
	[[ $n == nkvm* && -f $out/$n ]] || continue
	for q in qemu-pc qemu-pc-pvh qemu-microvm; do
		[[ -f $out/$q ]] || continue
		awk -v a="$(col "$n" 5)" -v b="$(col "$q" 5)" -v c="$(col "$n" 8)" -v d="$(col "$q" 8)" \
			-v n="$n" -v q="$q" 'BEGIN { if (b > 0 && d > 0)
			printf "%s ÷ %s: launch → init %.2f, launch → exit %.2f\n", n, q, a / b, c / d }'
	done
done
echo
echo "nkvm monitor overhead (RSS − guest RAM resident, at exit), median: $(median <"$out/nkvm.rss") KiB (target < 2048)"
for n in "${names[@]}"; do
	[[ -f $out/$n.exits ]] && { echo "$n, one boot (NKVM_STATS=1):"; sed 's/^/  /' "$out/$n.exits"; }
done
echo "raw (fields as in the table, per boot):"
for name in "${names[@]}"; do
	[[ -f $out/$name ]] && echo "  $name: $(tr '\n' ';' <"$out/$name")"
done
rm -rf "$out"
