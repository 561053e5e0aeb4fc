#!/usr/bin/env bash
# The measuring half of bench/pvh.sh; runs where /dev/kvm works (host or nested test host).
# Usage: bench/pvh-inside.sh RUNS
set -uo pipefail
runs=$1
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm
# shellcheck source=bench/lib.sh
. bench/lib.sh
declare -A kernel=([bzimage]=$cache/vmlinuz [pvh]=$cache/vmlinux)
out=$(mktemp -d)

ms() { echo $(((${2/./} - ${1/./}) / 1000)); }

# measure NAME: one boot; appends "ready_ms exit_ms" (or "fail") to $out/NAME
measure() {
	local name=$1 t0 ready="" line
	t0=$EPOCHREALTIME
	while IFS= read -r line; do
		[[ -z $ready && $line == *BENCH-READY* ]] && ready=$EPOCHREALTIME
		[[ $line == nkvm:\ stats:* ]] && echo "${line##*overhead_kib=}" >>"$out/$name.rss"
	done < <(NKVM_STATS=1 timeout 120 ./nkvm run -k "${kernel[$name]}" -i "$NKVM_INITRD" \
		-m 256M -c 1 -- echo BENCH-READY 2>&1 </dev/null)
	local t1=$EPOCHREALTIME
	if [[ -z $ready ]]; then
		echo fail >>"$out/$name"
		return
	fi
	echo "$(ms "$t0" "$ready") $(ms "$t0" "$t1")" >>"$out/$name"
}

echo "bench: $runs boots each of bzimage and pvh, interleaved; kernel $(cat "$cache/kernel-version")" >&2
for ((i = 0; i < runs; i++)); do
	# Alternate which goes first, so neither always follows the other.
	if ((i % 2)); then measure pvh; measure bzimage; else measure bzimage; measure pvh; fi
done
b=$(awk '$1 != "fail" { print $1 }' "$out/bzimage" | median)
echo
echo "| nkvm boot | boots | failed | launch → init (median ms) | launch → exit (median ms) | ÷ bzImage (init) | overhead KiB |"
echo "|---|---|---|---|---|---|---|"
for name in bzimage pvh; do
	r=$(awk '$1 != "fail" { print $1 }' "$out/$name" | median)
	e=$(awk '$1 != "fail" { print $2 }' "$out/$name" | median)
	n=$(grep -vc fail "$out/$name")
	f=$(grep -c fail "$out/$name")
	ratio=$(awk -v a="$r" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
	echo "| $name | $n | $f | $r | $e | $ratio | $(median <"$out/$name.rss") |"
done
# Each round's two boots ran back to back: their ratio cancels the load that drifts across rounds.
paired=$(paste -d' ' "$out/bzimage" "$out/pvh" |
	awk '$1 != "fail" && $3 != "fail" && $1 > 0 { printf "%.3f\n", $3 / $1 }' | median)
echo
echo "pvh ÷ bzimage, launch → init, median of the per-round ratios: $paired"
echo
echo "raw (ready_ms exit_ms per boot):"
for name in bzimage pvh; do echo "  $name: $(tr '\n' ';' <"$out/$name")"; done
rm -rf "$out"
