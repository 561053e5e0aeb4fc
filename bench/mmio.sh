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
ab_runs "$out" "$base" "$rounds" mmio src/hw/pci.c src/vmm/bus.c src/lib/util.c
echo "MMIO dispatch, ns per access (median of $rounds; base $base, this $(git rev-parse --short HEAD))"
for n in 1 2; do
	b=$(ab_median "$out" base "threads=$n" ns_per_access)
	t=$(ab_median "$out" this "threads=$n" ns_per_access)
	echo "threads=$n base=$b this=$t ratio=$(awk -v b="$b" -v t="$t" 'BEGIN { printf "%.2f", t / b }')"
done
