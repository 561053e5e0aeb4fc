#!/usr/bin/env bash
# The guest's fio at QD1 (4k random reads, libaio, O_DIRECT, on a raw virtio-blk disk) and its
# exits, for nkvm built from BASE (a git revision) and from this tree, booted alternately on the
# same guest and image, inside the nested test host where this host's KVM cannot run a standard
# guest. Prints each run, then medians of IOPS and, for this tree, of the MMIO exits and their
# mean dispatch time (NKVM_STATS; the base may not print them).
#   bench/qd1-ab.sh [ROUNDS [SECONDS [BASE]]]       (default 3 rounds of 10 s, BASE a04c995)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3} secs=${2:-10} base=${3:-a04c995}
make -s nkvm
./nkvm setup >/dev/null
# shellcheck source=bench/lib.sh
. bench/lib.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git worktree add -q --detach "$work/base" "$base"
trap 'git worktree remove --force "$work/base"; rm -rf "$work"' EXIT
make -s -C "$work/base" nkvm
cp "$work/base/nkvm" "$work/nkvm-base"
# shellcheck disable=SC2016 # the guest expands it
cmd_initrd "$work/qd1.cpio" "$NKVM_INITRD_FULL" sh -c 'fio --name=qd1 --filename=/dev/vda \
	--ioengine=libaio --direct=1 --rw=randread --bs=4k --iodepth=1 --time_based \
	--runtime="$1" --ramp_time=1 --size=256M --output-format=terse |
	awk -F";" "{ print \"QD1-IOPS\", \$8 }"' sh "$secs"
inside='truncate -s 256M /tmp/d.raw
for ((r = 1; r <= '"$rounds"'; r++)); do
	for who in base this; do
		bin=./nkvm; [[ $who == base ]] && bin=/tmp/nkvm-base
		NKVM_STATS=1 timeout 300 $bin run -c 2 -m 512M -i /tmp/qd1.cpio -d /tmp/d.raw,format=raw \
			</dev/null 2>&1 | tr -d "\r" | sed -n "s/^QD1-IOPS /$who iops=/p; s/^nkvm: exits: /$who /p"
	done
done'
tests/nested/run --mem 4096 --timeout $((600 + rounds * 2 * (90 + secs))) \
	--file "$work/nkvm-base:/tmp/nkvm-base" --file "$work/qd1.cpio:/tmp/qd1.cpio" \
	-- bash -c "$inside" | tee "$work/runs.txt"
for who in base this; do
	echo "$who: QD1 IOPS median $(awk -v w="$who" '$1 == w && $2 ~ /^iops=/ { sub("iops=", "", $2); print $2 }' "$work/runs.txt" | median)," \
		"MMIO exits median $(awk -v w="$who" '$1 == w && $4 ~ /^mmio=/ { sub("mmio=", "", $4); print $4 }' "$work/runs.txt" | median)," \
		"mean MMIO dispatch $(awk -v w="$who" '$1 == w && $5 ~ /^mmio_ns=/ { sub("mmio_ns=", "", $5); print $5 }' "$work/runs.txt" | median) ns"
done
