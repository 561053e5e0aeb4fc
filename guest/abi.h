/* SPDX-License-Identifier: MIT */
/*
 * The contract between nkvm and the guest it boots: shared by the monitor (src/) and the
 * guest's init (guest/init.c). Keep it free of host-only or guest-only includes.
 */
#ifndef NKVM_GUEST_ABI_H
#define NKVM_GUEST_ABI_H

/*
 * Debug-exit port. The guest's init writes one byte, its command's exit status, with `outb`;
 * the monitor stops the VM and exits with that status. A port no PC device uses.
 */
#define NKVM_EXIT_PORT 0x0f4

/*
 * Files that `nkvm run` adds to the guest's initramfs at boot, in a small cpio archive
 * appended after the initrd (the kernel unpacks concatenated archives in order).
 * NKVM_CMD_FILE holds the command's argv, each argument terminated by a NUL byte. When it is
 * absent, init starts an interactive shell.
 */
#define NKVM_CMD_FILE "/etc/nkvm/cmd"

/* One module path per line (relative to /lib/modules/<version>/), dependencies first. */
#define NKVM_MODULES_FILE "/etc/nkvm/modules"

/*
 * The load lists of the module groups `nkvm run` appended for the machine's devices (one
 * archive per group: src/cmd/initrd_groups.h), one file per group in the form of
 * NKVM_MODULES_FILE. The init loads NKVM_MODULES_FILE, then every file here in name order.
 */
#define NKVM_MODULES_DIR "/etc/nkvm/modules.d"

/*
 * On the kernel command line (nkvm run -p nkvm.modtimes): the init prints when it started
 * and how long each module took to load, for bench/lean.sh.
 */
#define NKVM_MODTIMES_PARAM "nkvm.modtimes"

/*
 * The guest's NICs (nkvm run -n), one line each in the order given:
 *	MAC ADDRESS/PREFIX GATEWAY DNS
 * as "52:4b:01:02:03:00 10.0.2.15/24 10.0.2.2 10.0.2.3", "-" for what nkvm leaves alone (a
 * tap NIC without guest_ip=: "52:4b:01:02:03:01 - - -"). Absent without -n. The init then
 * (virtio_net came in the "net" module group) brings lo up, finds each NIC by its MAC, gives
 * it its address and brings it up, makes the first GATEWAY the default route and the DNS
 * servers /etc/resolv.conf's, before the command runs.
 */
#define NKVM_NET_FILE "/etc/nkvm/net"

/*
 * The host directories to mount (nkvm run --share, --root), one line each:
 *	TAG GUESTPATH ro|rw
 * as "src /mnt/src rw"; --root's line comes first, with GUESTPATH "/". Absent without them.
 * The init then (virtiofs came in the "fs" module group) mounts the root's tag and switches
 * into it, then mounts each share (`mount -t virtiofs TAG GUESTPATH`, making GUESTPATH when
 * missing) before the command runs.
 */
#define NKVM_SHARES_FILE "/etc/nkvm/shares"

#endif
