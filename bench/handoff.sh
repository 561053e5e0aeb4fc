#!/usr/bin/env bash
# Where nkvm trails `qemu-img bench` with the asynchronous engines (issue 5), and why: a virtio
# request crosses two threads that qemu-img bench does not have, the driver playing the guest and
# the queue thread (the kick, then the interrupt), while qemu-img submits and sleeps in one
# thread. At depth 1 every request pays that round trip; at depth 32 every wave of completions
# does (one interrupt per batch, then the refill). This measures the hand-off alone
# (bench/handoff.c: two threads passing a token through eventfds) beside nkvm and qemu-img with
# the aio and io_uring engines, once with the threads free to run on any CPU and once with the
# whole process on one CPU (taskset), where a wakeup needs no other CPU to come out of idle.
# Interleaved rounds; medians.
#   bench/handoff.sh [ROUNDS [DIR]]      (default 6 rounds, images in /var/tmp/nkvm-engines)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-6}
dir=${2:-/var/tmp/nkvm-engines}
make -s nkvm
scripts/install-deps.sh
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cc -O2 -Wall -Wextra -Werror -o "$out/handoff" bench/handoff.c -lpthread
mkdir -p "$dir"
raw=$dir/disk.raw
[[ -f $raw ]] || head -c 1G /dev/urandom >"$raw"
stride=$((65537 * 4096))
cpu=$(($(nproc) - 1))
# depth, queues: the QD1 rows of bench/engines.sh, and 4k QD32
shapes=("1 1" "1 2" "32 1")

field() { sed -nE "s/.*\"$1\": ([0-9.]+).*/\\1/p"; }
for ((r = 1; r <= rounds; r++)); do
	echo "bench: round $r of $rounds" >&2
	for place in any one; do
		pin=()
		[[ $place == one ]] && pin=(taskset -c "$cpu")
		echo "$place $("${pin[@]}" "$out/handoff")" >>"$out/handoff.txt"
		for engine in io_uring native; do
			for shape in "${shapes[@]}"; do
				read -r d q <<<"$shape"
				j=$("${pin[@]}" ./nkvm img bench -q --json -f raw -i "$engine" -t none \
					--queues "$q" -d "$d" -s 4096 -S "$stride" --time 1 "$raw")
				ops=$(field ops <<<"$j")
				s=$("${pin[@]}" qemu-img bench -f raw -i "$engine" -t none -d $((q * d)) \
					-c "$ops" -s 4096 -S "$stride" "$raw" | awk '/Run completed in/ { print $4 }')
				echo "$place $engine $d $q $(field iops <<<"$j") $(field cpu_us_per_io <<<"$j")" \
					"$(awk -v o="$ops" -v s="$s" 'BEGIN { printf "%.0f", o / s }')" \
					"$(field interrupts_per_io <<<"$j")" >>"$out/runs.txt"
			done
		done
	done
done

col() {
	awk -v p="$1" -v e="$2" -v d="$3" -v q="$4" -v c="$5" \
		'$1 == p && $2 == e && $3 == d && $4 == q { print $c }' "$out/runs.txt" | median
}
echo
echo "Medians of $rounds rounds, 4k reads, raw, O_DIRECT (-t none), qemu-img's stride; qemu-img"
echo "bench runs -d QUEUES x DEPTH (it has one queue) and the same count as nkvm completed."
echo "Time per I/O is 1/IOPS: at depth 1 with 1 queue, the latency."
echo
echo "| engine | depth x queues | CPUs | nkvm IOPS | qemu-img IOPS | nkvm ÷ qemu-img |" \
	"time per I/O, nkvm − qemu-img (µs) | nkvm CPU µs/IO | interrupts/IO |"
echo "|---|---|---|---|---|---|---|---|---|"
for engine in io_uring native; do
	for shape in "${shapes[@]}"; do
		read -r d q <<<"$shape"
		for place in any one; do
			a=$(col "$place" "$engine" "$d" "$q" 5) b=$(col "$place" "$engine" "$d" "$q" 7)
			echo "| $engine | $d x $q | $place | $(printf %.0f "$a") | $b |" \
				"$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f | %.2f", a / b, 1e6 / a - 1e6 / b }') |" \
				"$(col "$place" "$engine" "$d" "$q" 6) | $(col "$place" "$engine" "$d" "$q" 8) |"
		done
	done
done
echo
for place in any one; do
	echo "Hand-off round trip between two threads (eventfd, blocking read), CPUs $place:" \
		"$(awk -v p="$place" '$1 == p { print $2 }' "$out/handoff.txt" | median) µs"
done
