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
