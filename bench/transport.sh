#!/usr/bin/env bash
# The virtio-pci transport's register writes as the writing vCPU sees them (bench/transport.c),
# for this tree and for BASE (a git revision, default the commit before the transport's worker
# thread), built the same way and run alternately. Medians over ROUNDS runs of each run's median.
#   bench/transport.sh [ROUNDS [BASE]]       (default 5 rounds, BASE be5880b)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
base=${2:-be5880b}
# shellcheck source=bench/lib.sh
. bench/lib.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ab_runs "$out" "$base" "$rounds" transport src/virtio/pci.c src/virtio/queue.c src/hw/pci.c \
	src/vmm/irq.c src/vmm/bus.c src/vmm/memory.c src/lib/util.c
echo "virtio-pci register writes on the vCPU, ns (median of $rounds; base $base, this $(git rev-parse --short HEAD))"
for op in reset start route unmask qreg; do
	echo "$op base=$(ab_median "$out" base "op=$op" ns) this=$(ab_median "$out" this "op=$op" ns)"
done
