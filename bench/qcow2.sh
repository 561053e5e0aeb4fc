#!/usr/bin/env bash
# qcow2 benchmark (issue 4), natively, no guest: nkvm's qcow2 against its raw on the same data
# (every cluster allocated), and first-write allocation on a fresh qcow2, nkvm against
# `qemu-img bench` on the same workload. Both through O_DIRECT (-t none) with the default engine
# (nkvm) and `-i io_uring` (qemu-img). Prints markdown tables of medians.
#   bench/qcow2.sh [ROUNDS [DIR]]        (default 3 rounds, images in /var/tmp/nkvm-qcow2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
dir=${2:-/var/tmp/nkvm-qcow2}
make -s nkvm
# shellcheck source=bench/lib.sh
. bench/lib.sh
mkdir -p "$dir"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
nkvm=$PWD/nkvm

# The allocated pair: 1 GiB of random data, and a qcow2 converted from it.
if [[ ! -f $dir/data.raw ]]; then
	head -c 1G /dev/urandom >"$dir/data.raw"
	qemu-img convert -O qcow2 "$dir/data.raw" "$dir/data.qcow2"
fi

# iops JSON_LINE: the IOPS field of nkvm img bench --json
iops() { grep -oE '"iops": [0-9.]+' | grep -oE '[0-9.]+$'; }
# qemu_iops: ops/s from qemu-img bench's "Run completed in S seconds." and the count
qemu_iops() { awk -v c="$1" '/Run completed in/ { printf "%.0f\n", c / $4 }'; }

allocated=(
	"4k-randread-qd32|-d 32 --random"
	"4k-randwrite-qd32|-d 32 --random -w --pattern=90"
	"1m-seqread-qd8|-d 8 -s 1M"
	"1m-seqwrite-qd8|-d 8 -s 1M -w --pattern=90"
)
for ((r = 1; r <= rounds; r++)); do
	echo "bench: round $r of $rounds" >&2
	for row in "${allocated[@]}"; do
		name=${row%%|*}
		# shellcheck disable=SC2086 # the options are words
		for fmt in raw qcow2; do
			echo "$name $("$nkvm" img bench -q --json -t none ${row#*|} --time 2 "$dir/data.$fmt" | iops)" \
				>>"$out/$fmt"
		done
	done
	# First writes: every request allocates (64k = one cluster each, sequential; 4k random
	# into a fresh image, most allocating). qemu-img has no random mode: it strides by 17
	# clusters, touching a new one with each request as well.
	for w in "alloc-64k-seq|64k|65536|-d 8" "alloc-4k-random|4k|1114112|-d 32"; do
		IFS='|' read -r name bs step depth <<<"$w"
		count=8000
		rm -f "$dir/fresh.qcow2"
		qemu-img create -q -f qcow2 "$dir/fresh.qcow2" 16G
		# shellcheck disable=SC2086
		if [[ $name == alloc-4k-random ]]; then
			opt=--random
		else
			opt=
		fi
		# shellcheck disable=SC2086
		echo "$name $("$nkvm" img bench -q --json -t none -w $depth -s "$bs" $opt -c $count \
			"$dir/fresh.qcow2" | iops)" >>"$out/nkvm-alloc"
		qemu-img check -q "$dir/fresh.qcow2" || echo "bench: nkvm's image failed qemu-img check" >&2
		rm -f "$dir/fresh.qcow2"
		qemu-img create -q -f qcow2 "$dir/fresh.qcow2" 16G
		# shellcheck disable=SC2086
		echo "$name $(qemu-img bench -w -t none -i io_uring $depth -s "$bs" -S "$step" -c $count \
			-f qcow2 "$dir/fresh.qcow2" | qemu_iops $count)" >>"$out/qemu-alloc"
	done
done
rm -f "$dir/fresh.qcow2"

med() { awk -v j="$2" '$1 == j { print $2 }' "$out/$1" | median; }
echo
echo "Medians of $rounds rounds; nkvm img bench -t none (default engine), qemu-img bench -t none -i io_uring:"
echo
echo "| allocated, 1 GiB | raw IOPS | qcow2 IOPS | qcow2 ÷ raw |"
echo "|---|---|---|---|"
for row in "${allocated[@]}"; do
	name=${row%%|*}
	a=$(med raw "$name") b=$(med qcow2 "$name")
	echo "| $name | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a ? b / a : 0 }') |"
done
echo
echo "| first write on a fresh qcow2 | nkvm IOPS | qemu-img IOPS | nkvm ÷ qemu-img |"
echo "|---|---|---|---|"
for name in alloc-64k-seq alloc-4k-random; do
	a=$(med nkvm-alloc "$name") b=$(med qemu-alloc "$name")
	echo "| $name | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b ? a / b : 0 }') |"
done
