#!/usr/bin/env bash
# The measuring half of bench/blk.sh; runs where /dev/kvm works.
#   blk-inside.sh SECONDS ROUNDS
# Each round runs the jobs on the host, in nkvm and in QEMU, one after the other; the table gives
# the median over the rounds of each job's IOPS.
# Environment: BENCH_FORMAT, BENCH_ENGINES, BENCH_QEMU_AIO, BENCH_CACHE and BENCH_JOBS as for
# bench/blk.sh. BENCH_BASE_NKVM: a second nkvm binary (bench/blk.sh's BENCH_BASE), run with each
# engine right before ./nkvm in every round, as the columns "base-ENGINE".
# BENCH_LOOP_EXT4=1 (set by bench/blk.sh in the nested test host with BENCH_CACHE=none; needs
# root and mkfs.ext4): the image goes on an ext4 made on a loop device over a sparse file in
# $TMPDIR, as tests/integration/on-ext4.sh does, since the test host's tmpfs refuses O_DIRECT.
# Without it the image is in $TMPDIR (default /tmp), which must then take O_DIRECT for
# BENCH_CACHE=none.
set -uo pipefail
secs=$1
rounds=${2:-3}
# shellcheck source=bench/lib.sh
. bench/lib.sh
kernel=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/vmlinuz
format=${BENCH_FORMAT:-raw}
engines=${BENCH_ENGINES:-threads}
qemu_aios=${BENCH_QEMU_AIO:-threads}
cache=${BENCH_CACHE:-writeback}
jobs=${BENCH_JOBS:-issue3}
base_nkvm=${BENCH_BASE_NKVM:-}
die() {
	echo "bench: $*" >&2
	exit 1
}
case $cache in
writeback | none) ;;
*) die "BENCH_CACHE is writeback or none, not $cache" ;;
esac
case $jobs in
issue3) img_mb=640 rows="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 seqread-1m seqwrite-1m" ;;
# Issue 22's image: 256 MiB.
issue22) img_mb=256 rows="randread-4k-qd16 randread-4k-qd32 randwrite-4k-qd16 randwrite-4k-qd32 randwrite-4k-16t" ;;
*) die "BENCH_JOBS is issue3 or issue22, not $jobs" ;;
esac
tmp=${TMPDIR:-/tmp}
img=$tmp/nkvm-bench.img
where="$tmp ($(stat -f -c %T "$tmp" 2>/dev/null || echo '?'))"
out=$(mktemp -d)
scratch=
# Everything made here goes at exit, whichever way the script ends (the ext4 holds the images,
# so they go before it is unmounted).
cleanup() {
	rm -rf "$out" "$img" "$img.qcow2"
	if [[ -n $scratch ]]; then
		umount -d "$scratch" && rm -rf "$scratch" "$scratch.img"
	fi
}
trap cleanup EXIT
if [[ ${BENCH_LOOP_EXT4:-0} == 1 ]]; then
	# The file system users keep images on; 2 GiB holds the raw image and the qcow2 beside it.
	# Sparse, so the tmpfs under it only holds what is written.
	# scratch is set (so cleanup unmounts it) only once the mount has worked.
	dir=$tmp/nkvm-bench-ext4
	truncate -s 2G "$dir.img" || die "cannot make $dir.img"
	mkfs.ext4 -q -E lazy_itable_init=1 "$dir.img" || die "mkfs.ext4 on $dir.img failed"
	mkdir -p "$dir"
	if ! mount -o loop "$dir.img" "$dir"; then
		rm -rf "$dir" "$dir.img"
		die "cannot mount $dir.img on a loop device (root, and the loop module, needed)"
	fi
	scratch=$dir
	img=$scratch/nkvm-bench.img
	where="ext4 on a loop device over a sparse file in $where"
fi
dd if=/dev/zero of="$img" bs=1M count="$img_mb" 2>/dev/null || die "cannot write $img"
direct=1
dd if=/dev/zero of="$img" bs=4096 count=1 oflag=direct conv=notrunc 2>/dev/null || direct=0
# cache=none without O_DIRECT would measure the page cache under another name (and nkvm's aio
# engine would fall back to threads): refuse rather than print a table that says cache=none.
[[ $cache == none && $direct == 0 ]] &&
	die "BENCH_CACHE=none needs O_DIRECT, which the file system under $img ($where) refuses;" \
		"set TMPDIR to a directory on ext4 or xfs"
if [[ $format == qcow2 ]]; then
	# Every cluster allocated, so reads measure the mapping, not zero-filling holes. The host's
	# fio still runs on a raw file of the same size: it is the limit of the file system.
	qemu-img create -q -f qcow2 -o preallocation=falloc "$img.qcow2" "${img_mb}M"
fi
guest_img=$img
[[ $format == qcow2 ]] && guest_img=$img.qcow2
# Lines are picked out by their shape: QEMU's firmware leaves escape codes in front of the first.
# Guests add the virtio-blk interrupts taken during the job as a fourth number.
pick() { tr -d '\r' | grep -oE '(randread|randwrite|seqread|seqwrite)[a-z0-9-]* [0-9]+ [0-9]+( [0-9]+)?$'; }

for ((r = 1; r <= rounds; r++)); do
	echo "bench: round $r of $rounds: cache=$cache, $format image on $where: host fio on $img" \
		"(direct=$direct), nkvm ($engines), qemu ($qemu_aios)" >&2
	sh bench/blk-jobs.sh "$img" "$secs" "$direct" "$jobs" >>"$out/host"
	for e in $engines; do
		for who in ${base_nkvm:+base} nkvm; do
			bin=./nkvm
			[[ $who == base ]] && bin=$base_nkvm
			timeout 900 "$bin" run -c 2 -m 1G -i "$NKVM_INITRD_FULL" \
				-d "$guest_img,engine=$e,cache=$cache" -- \
				sh -c "$(cat bench/blk-jobs.sh)" sh /dev/vda "$secs" 1 "$jobs" \
				</dev/null 2>&1 | pick >>"$out/$who-$e"
		done
	done
	for a in $qemu_aios; do
		timeout 900 qemu-system-x86_64 -M pc -enable-kvm -cpu host -m 1G -smp 2 -nographic \
			-nodefaults -no-reboot -serial stdio -kernel "$kernel" -initrd bench/blk-initrd.cpio \
			-append "$NKVM_APPEND" \
			-drive "file=$guest_img,format=$format,if=none,id=d0,aio=$a,cache=$cache" \
			-device virtio-blk-pci,drive=d0 -device isa-debug-exit,iobase=0xf4,iosize=0x01 \
			</dev/null 2>&1 | pick >>"$out/qemu-$a"
	done
done

# Every round's IOPS, for targets that hold "every round", and the guest's virtio-blk
# interrupts per I/O (over the job and its 1 s ramp, so slightly high).
echo
echo "IOPS per round (in the order run), then interrupts per I/O:"
for c in $(cd "$out" && ls); do
	for job in $rows; do
		echo "$c $job $(awk -v j="$job" -v s="$secs" '$1 == j { printf "%s ", $2 }
			$1 == j && NF > 3 && $2 > 0 { r = r sprintf("%.3f ", $4 / ($2 * (s + 1))) }
			END { if (r != "") printf "/ %s", r }' "$out/$c")"
	done
done
# med WHO JOB FIELD: median over the rounds (field 2 IOPS, 3 KiB/s)
med() { awk -v j="$2" -v f="$3" '$1 == j { print $f }' "$out/$1" | median; }

cols=()
for e in $engines; do
	[[ -n $base_nkvm ]] && cols+=("base-$e")
	cols+=("nkvm-$e")
done
for a in $qemu_aios; do cols+=("qemu-$a"); done
cols+=(host)
echo
echo "Medians of $rounds rounds, ${secs} s per job, $format image on $where, cache=$cache" \
	"(nkvm and QEMU; host fio direct=$direct); IOPS (MB/s):"
echo
head="| job, cache=$cache |"
rule="|---|"
for c in "${cols[@]}"; do head+=" $c |"; rule+="---|"; done
head+=" nkvm-${engines%% *} ÷ qemu-${qemu_aios%% *} |"
rule+="---|"
echo "$head"
echo "$rule"
for job in $rows; do
	row="| $job |"
	for c in "${cols[@]}"; do
		touch "$out/$c"
		row+=" $(med "$c" "$job" 2) ($(med "$c" "$job" 3 | awk '{ printf "%.1f", $1 / 1024 }')) |"
	done
	ni=$(med "nkvm-${engines%% *}" "$job" 2)
	qi=$(med "qemu-${qemu_aios%% *}" "$job" 2)
	row+=" $(awk -v n="$ni" -v q="$qi" 'BEGIN { print q + 0 ? sprintf("%.2f", n / q) : "-" }') |"
	echo "$row"
done
