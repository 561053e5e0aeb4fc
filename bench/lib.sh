# shellcheck shell=bash
# Shared by the benchmarks (sourced by bash scripts).

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
