#!/usr/bin/env bash
# qcow2 first writes (issue 22): nkvm builds side by side with `qemu-img bench -i io_uring`, each
# run on a fresh 16 GiB qcow2, interleaved round by round, O_DIRECT. Prints the medians and each
# build's ratio to qemu-img, and fails if any image written fails `qemu-img check`.
#   bench/qcow2-alloc.sh ROUNDS DIR NKVM... (e.g. a copy of the build before, and ./nkvm)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1 dir=$2
shift 2
# shellcheck source=bench/lib.sh
. bench/lib.sh
mkdir -p "$dir"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
img=$dir/fresh.qcow2
count=8000
# As bench/qcow2.sh: 64k sequential QD8 (a new cluster each request), 4k random QD32 (qemu-img
# has no random mode: a stride of 17 clusters, a new cluster each request as well).
rows=("alloc-64k-seq|64k|65536|8|" "alloc-4k-random|4k|1114112|32|--random")
for ((r = 1; r <= rounds; r++)); do
	echo "bench: round $r of $rounds" >&2
	for row in "${rows[@]}"; do
		IFS='|' read -r name bs step depth opt <<<"$row"
		i=0
		for bin in "$@"; do
			rm -f "$img"
			qemu-img create -q -f qcow2 "$img" 16G
			# shellcheck disable=SC2086
			"$bin" img bench -q --json -t none -w -d "$depth" -s "$bs" $opt -c $count "$img" |
				grep -oE '"iops": [0-9.]+' | grep -oE '[0-9.]+$' >>"$out/$name.$i"
			qemu-img check -q "$img" || { echo "bench: $bin: image fails qemu-img check" >&2; exit 1; }
			i=$((i + 1))
		done
		rm -f "$img"
		qemu-img create -q -f qcow2 "$img" 16G
		qemu-img bench -w -t none -i io_uring -d "$depth" -s "$bs" -S "$step" -c $count \
			-f qcow2 "$img" | awk -v c=$count '/Run completed in/ { printf "%.0f\n", c / $4 }' \
			>>"$out/$name.qemu"
	done
done
rm -f "$img"
echo "| first write, medians of $rounds | $* | qemu-img | ratios to qemu-img |"
for row in "${rows[@]}"; do
	name=${row%%|*}
	q=$(median <"$out/$name.qemu")
	line="| $name |" ratios=
	for ((i = 0; i < $#; i++)); do
		m=$(median <"$out/$name.$i")
		line+=" $m ($(paste -sd/ "$out/$name.$i")) |"
		ratios+=" $(awk -v a="$m" -v b="$q" 'BEGIN { printf "%.2f", a / b }')"
	done
	echo "$line $q ($(paste -sd/ "$out/$name.qemu")) |$ratios |"
done
