#!/usr/bin/env bash
# The measuring half of bench/lean.sh; runs where /dev/kvm works (host or nested test host).
# Usage: bench/lean-inside.sh RUNS [OLD_INITRD]
set -uo pipefail
runs=$1
old=${2:-}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm
base=$cache/initrd.cpio
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# The base archive with every group appended, as run would append them all.
cat "$base" "$cache"/initrd-modules/*.cpio >"$out/all.cpio"
# The base archive with one file as big as the groups: their size without their modules.
pad=$(($(stat -c %s "$out/all.cpio") - $(stat -c %s "$base")))
mkdir -p "$out/pad/pad"
head -c "$pad" /dev/zero >"$out/pad/pad/blob"
{
	cat "$base"
	(cd "$out/pad" && find pad | cpio -o -H newc 2>/dev/null)
} >"$out/pad.cpio"
rm -rf "$out/pad"

run="./nkvm run -m 256M -c 1"
declare -A cmd=(
	[lean]="$run --no-balloon -p nkvm.modtimes"
	[default]="$run -p nkvm.modtimes"
	[pad]="$run --no-balloon -p nkvm.modtimes -i $out/pad.cpio"
	[all]="$run --no-balloon -p nkvm.modtimes -i $out/all.cpio"
)
declare -A size=(
	[lean]=$(stat -c %s "$base")
	[default]=$(($(stat -c %s "$base") + $(stat -c %s "$cache/initrd-modules/balloon.cpio")))
	[pad]=$(stat -c %s "$out/pad.cpio")
	[all]=$(stat -c %s "$out/all.cpio")
)
names=(lean default pad all)
if [[ -n $old ]]; then
	cmd[old]="$run --no-balloon -i $old"
	size[old]=$(stat -c %s "$old")
	names+=(old)
fi

ms() { echo $(((${2/./} - ${1/./}) / 1000)); }

# measure NAME: one boot; appends "ready_ms exit_ms init_ms modules_ms nmods" (init_ms on the
# guest kernel's clock; "-" where the init printed nothing) or "fail" to $out/NAME, and each
# module's "path us" to $out/NAME.mods.
measure() {
	local name=$1 t0 t1 ready="" line start="-" loaded="-" n=0
	t0=$EPOCHREALTIME
	while IFS= read -r line; do
		line=${line%$'\r'}
		case $line in
		*BENCH-READY*) [[ -n $ready ]] || ready=$EPOCHREALTIME ;;
		"nkvm-init: started at "*) start=${line#nkvm-init: started at } start=${start% s} ;;
		"nkvm-init: modules loaded at "*) loaded=${line#nkvm-init: modules loaded at } loaded=${loaded% s} ;;
		"nkvm-init: module "*)
			line=${line#nkvm-init: module }
			echo "${line%%:*} $(awk '{ print $1 }' <<<"${line#*:}")" >>"$out/$name.mods"
			n=$((n + 1))
			;;
		esac
	done < <(timeout 120 bash -c "${cmd[$name]} -- echo BENCH-READY" 2>&1 </dev/null)
	t1=$EPOCHREALTIME
	if [[ -z $ready ]]; then
		echo fail >>"$out/$name"
		return
	fi
	echo "$(ms "$t0" "$ready") $(ms "$t0" "$t1") $(awk -v s="$start" -v l="$loaded" \
		'BEGIN { if (s == "-") print "- -"; else printf "%.0f %.0f\n", s * 1000, (l - s) * 1000 }') $n" \
		>>"$out/$name"
}

echo "bench: $runs boots each of ${names[*]}, interleaved; kernel $(cat "$cache/kernel-version")" >&2
for ((i = 0; i < runs; i++)); do
	for name in "${names[@]}"; do measure "$name"; done
done

col() { awk -v c="$2" '$1 != "fail" && $c != "-" { print $c }' "$out/$1" | median; }
echo
echo "| initramfs | MB | modules loaded | boots (failed) | launch → ready (median ms) | launch → exit | init starts (guest clock, ms) | module loads (ms) |"
echo "|---|---|---|---|---|---|---|---|"
for name in "${names[@]}"; do
	echo "| $name | $(awk -v b="${size[$name]}" 'BEGIN { printf "%.1f", b / 1e6 }') |" \
		"$(awk '$1 != "fail" { print $5 }' "$out/$name" | median) |" \
		"$(grep -vc fail "$out/$name") ($(grep -c fail "$out/$name")) |" \
		"$(col "$name" 1) | $(col "$name" 2) | $(col "$name" 3) | $(col "$name" 4) |"
done
echo
echo "Each module's load (finit_module, median µs over the 'all' boots, in load order):"
if [[ -f $out/all.mods ]]; then
	awk '{ if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } v[$1] = v[$1] " " $2 }
		END { for (i = 1; i <= n; i++) print order[i], v[order[i]] }' "$out/all.mods" |
		while read -r mod vals; do
			echo "  ${mod##*/}: $(tr ' ' '\n' <<<"$vals" | median)"
		done
fi
echo "raw (ready exit init modules nmods per boot):"
for name in "${names[@]}"; do echo "  $name: $(tr '\n' ';' <"$out/$name")"; done
