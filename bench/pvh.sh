#!/usr/bin/env bash
# PVH against the bzImage path: the same kernel booted by nkvm as the bzImage `nkvm setup`
# downloads and as the vmlinux it extracts from it (PVH entry, no decompression in the guest), on
# the same initramfs, memory and CPUs, interleaved, inside the same (test) host. Measures launch →
# the guest's init running its command ("ready") and launch → nkvm's exit; prints medians.
#   bench/pvh.sh [RUNS]        (default 7 boots of each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
make -s nkvm
./nkvm setup >/dev/null
cache=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm
[[ -r $cache/vmlinux ]] || { echo "bench: no $cache/vmlinux (nkvm setup makes it)" >&2; exit 1; }

if tests/nested/needed; then
	echo "bench: this host's KVM cannot run a standard guest: measuring inside the nested test host" >&2
	tests/nested/run --mem 4096 --timeout 3000 --file "$cache/vmlinux:/cache/nkvm/vmlinux" \
		-- bash bench/pvh-inside.sh "$runs"
else
	bash bench/pvh-inside.sh "$runs"
fi
