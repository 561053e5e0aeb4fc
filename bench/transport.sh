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
build() { # TREE OUT
	cc -O2 -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -I"$1/src" \
		-I"$1" -o "$2" bench/transport.c "$1/src/virtio/pci.c" "$1/src/virtio/queue.c" \
		"$1/src/hw/pci.c" "$1/src/vmm/irq.c" "$1/src/vmm/bus.c" "$1/src/vmm/memory.c" \
		"$1/src/lib/util.c" -lpthread
}
mkdir -p "$out/base"
git archive "$base" src | tar -x -C "$out/base"
build "$out/base" "$out/transport-base"
build . "$out/transport-this"
for ((r = 1; r <= rounds; r++)); do
	for who in base this; do
		"$out/transport-$who" | sed "s/^/$who /" >>"$out/runs.txt"
	done
done
echo "virtio-pci register writes on the vCPU, ns (median of $rounds; base $base, this $(git rev-parse --short HEAD))"
for op in reset start route unmask qreg; do
	b=$(awk -v o="op=$op" '$1 == "base" && $2 == o { sub("ns=", "", $3); print $3 }' \
		"$out/runs.txt" | median)
	t=$(awk -v o="op=$op" '$1 == "this" && $2 == o { sub("ns=", "", $3); print $3 }' \
		"$out/runs.txt" | median)
	echo "$op base=$b this=$t"
done
