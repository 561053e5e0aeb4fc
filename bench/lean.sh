#!/usr/bin/env bash
# The lean initramfs (issue 20, item 3): what the initramfs's size and each module load cost a
# boot. Boots the same kernel with, interleaved: the lean base archive alone; the base with a
# padding file as big as every module group together (the size alone); the base with every
# group appended (size and all their module loads); the default machine (base + the balloon's
# group); and, when given, an older full archive (before the groups: 16.7 MB, 24 modules).
# The guest's init prints its start and each module's load time (nkvm.modtimes).
#   bench/lean.sh [RUNS [OLD_INITRD]]      (default 7 runs each)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-7}
old=${2:-}
make -s nkvm
./nkvm setup >/dev/null
files=()
[[ -z $old ]] || files=(--file "$old:/tmp/lean-old.cpio")
if tests/nested/needed; then
	echo "bench: this host's KVM cannot run a standard guest: measuring inside the nested test host" >&2
	tests/nested/run --mem 4096 --timeout 3000 "${files[@]}" \
		-- bash bench/lean-inside.sh "$runs" "${old:+/tmp/lean-old.cpio}"
else
	bash bench/lean-inside.sh "$runs" "$old"
fi
