# shellcheck shell=bash
# Shared by the benchmarks (sourced by bash scripts).

# NKVM_GROUPS="disk balloon" cmd_initrd ...: for another VMM's guest, also the module groups of
# its devices (initrd-modules/NAME.cpio beside BASE), which `nkvm run` appends for its own.
# cmd_initrd OUT BASE ARG...: initramfs BASE with the command ARG... appended as /etc/nkvm/cmd,
# exactly as `nkvm run -i BASE -- ARG...` does it, so that another VMM boots the same.
cmd_initrd() {
	local out=$1 base=$2 dir size
	shift 2
	dir=$(mktemp -d)
	mkdir -p "$dir/etc/nkvm"
	printf '%s\0' "$@" >"$dir/etc/nkvm/cmd"
	size=$(stat -c %s "$base")
	{
		cat "$base"
		head -c $(((4 - size % 4) % 4)) /dev/zero
		for g in ${NKVM_GROUPS:-}; do cat "$(dirname "$base")/initrd-modules/$g.cpio"; done
		(cd "$dir" && find etc | cpio -o -H newc --quiet)
	} >"$out"
	rm -rf "$dir"
}

# The default guest's initramfs, and the one with fio that `nkvm setup` builds beside it.
export NKVM_INITRD=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/initrd.cpio
export NKVM_INITRD_FULL=${XDG_CACHE_HOME:-$HOME/.cache}/nkvm/initrd-full.cpio

# median: the median of the numbers on stdin, one per line ("-" when there are none).
median() {
	sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'
}

# The kernel parameters nkvm gives its guests, for other VMMs booting the same guest.
export NKVM_APPEND="console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd quiet"

# ab_runs OUT BASE ROUNDS PROG SRC...: builds bench/PROG.c with the tree's files SRC (paths like
# src/hw/pci.c) twice, the same way: from git revision BASE and from this tree; then runs the two
# alternately ROUNDS times, each output line into OUT/runs.txt after "base " or "this ".
ab_runs() {
	local out=$1 base=$2 rounds=$3 prog=$4 who tree r s
	shift 4
	mkdir -p "$out/base"
	git archive "$base" src | tar -x -C "$out/base"
	for who in base this; do
		tree=.
		[[ $who == base ]] && tree=$out/base
		local srcs=()
		for s in "$@"; do srcs+=("$tree/$s"); done
		cc -O2 -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
			-I"$tree/src" -I"$tree" -o "$out/$prog-$who" "bench/$prog.c" "${srcs[@]}" -lpthread
	done
	for ((r = 1; r <= rounds; r++)); do
		for who in base this; do
			"$out/$prog-$who" | sed "s/^/$who /" >>"$out/runs.txt"
		done
	done
}

# ab_median OUT WHO KEY FIELD: the median of FIELD's values on OUT/runs.txt's lines "WHO KEY
# FIELD=value".
ab_median() {
	awk -v w="$2" -v k="$3" -v f="$4=" '$1 == w && $2 == k { sub(f, "", $3); print $3 }' \
		"$1/runs.txt" | median
}

# extract_vmlinux BZIMAGE OUT: the uncompressed ELF kernel inside a bzImage, found as the kernel's
# scripts/extract-vmlinux does but from the header's own pointers (boot protocol 2.08+,
# Documentation/x86/boot.rst: payload_offset at 0x248 and payload_length at 0x24c, counted from
# the protected-mode code at (setup_sects + 1) * 512), decompressed by the tool for its magic.
extract_vmlinux() {
	local img=$1 out=$2 sects off len magic
	sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$img" | tr -d ' ')
	((sects)) || sects=4
	off=$(od -An -tu4 -j $((0x248)) -N4 "$img" | tr -d ' ')
	len=$(od -An -tu4 -j $((0x24c)) -N4 "$img" | tr -d ' ')
	off=$(((sects + 1) * 512 + off))
	magic=$(od -An -tx1 -j "$off" -N4 "$img" | tr -d ' ')
	local dec
	case $magic in
	02214c18) dec="lz4 -dc" ;;
	1f8b*) dec="gzip -dc" ;;
	fd377a58) dec="xz -dc" ;;
	28b52ffd) dec="zstd -dc" ;;
	*) echo "extract_vmlinux: $img: unknown payload compression (magic $magic)" >&2; return 1 ;;
	esac
	# The payload ends with its uncompressed size (4 bytes), which the tools take for garbage.
	tail -c +$((off + 1)) "$img" | head -c "$len" | $dec >"$out" 2>/dev/null
	if [[ $(od -An -tx1 -N4 "$out" | tr -d ' ') != 7f454c46 ]]; then
		echo "extract_vmlinux: $img: the payload did not decompress to an ELF file" >&2
		return 1
	fi
}
