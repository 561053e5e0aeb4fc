#!/usr/bin/env bash
# The vCPU thread's MMIO dispatch (bus → PCI hole → BAR handler), timed in-process by
# bench/mmio.c on 1 and 2 threads, for this tree and for BASE (a git revision, default the commit
# before the lock-free BAR map), built the same way and run alternately. Medians of ROUNDS.
#   bench/mmio.sh [ROUNDS [BASE]]       (default 9 rounds, BASE a04c995)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-9}
base=${2:-a04c995}
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
build() { # TREE OUT
	cc -O2 -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -I"$1/src" \
		-I"$1" -o "$2" bench/mmio.c "$1/src/hw/pci.c" "$1/src/vmm/bus.c" \
		"$1/src/lib/util.c" -lpthread
}
mkdir -p "$out/base"
git archive "$base" src | tar -x -C "$out/base"
build "$out/base" "$out/mmio-base"
build . "$out/mmio-this"
for ((r = 1; r <= rounds; r++)); do
	for who in base this; do
		"$out/mmio-$who" | sed "s/^/$who /" >>"$out/runs.txt"
	done
done
echo "MMIO dispatch, ns per access (median of $rounds; base $base, this $(git rev-parse --short HEAD))"
for n in 1 2; do
	b=$(awk -v n="threads=$n" '$1 == "base" && $2 == n { sub("ns_per_access=", "", $3); print $3 }' \
		"$out/runs.txt" | median)
	t=$(awk -v n="threads=$n" '$1 == "this" && $2 == n { sub("ns_per_access=", "", $3); print $3 }' \
		"$out/runs.txt" | median)
	echo "threads=$n base=$b this=$t ratio=$(awk -v b="$b" -v t="$t" 'BEGIN { printf "%.2f", t / b }')"
done
