/* SPDX-License-Identifier: MIT */
/*
 * Where a guest's exits to nkvm come from: counts by KVM exit reason, and for port I/O and MMIO
 * by port and by 4 KiB page, for finding the exits a boot could do without (NKVM_STATS=1).
 * Each vCPU keeps its own (only its thread writes them: no lock, no atomic); `nkvm run` sums
 * them at exit. The tables are bounded: past EXIT_STATS_SITES distinct ports (or pages), exits
 * are counted as `elsewhere`.
 */
#ifndef NKVM_VMM_EXIT_STATS_H
#define NKVM_VMM_EXIT_STATS_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* KVM_EXIT_* reasons counted by number; a larger one is counted in the last slot. */
#define EXIT_STATS_REASONS 40
/* Distinct ports or pages kept per table: a power of two (the hash takes the top bits). */
#define EXIT_STATS_SITES_SHIFT 6
#define EXIT_STATS_SITES (1U << EXIT_STATS_SITES_SHIFT)

struct exit_site {
	uint64_t key; /* 0: unused; else the site's key + 1 (see exit_stats.c) */
	uint64_t count;
};

struct exit_sites {
	struct exit_site slot[EXIT_STATS_SITES];
	uint64_t elsewhere; /* exits at sites that found the table full */
};

struct exit_stats {
	uint64_t reasons[EXIT_STATS_REASONS + 1];
	uint64_t coalesced; /* writes KVM queued instead of exiting, replayed by this vCPU */
	struct exit_sites io; /* by port and direction */
	struct exit_sites mmio; /* by guest-physical page and direction */
};

/* Counts one exit as KVM left it in run; with `sites`, also its port or page. */
void exit_stats_count(struct exit_stats *s, const struct kvm_run *run, bool sites);

/* Adds every count of `from` into `to` (summing the vCPUs at exit). */
void exit_stats_add(struct exit_stats *to, const struct exit_stats *from);

/*
 * Three lines on f, most frequent first, sites with no exits left out:
 *   nkvm: exit reasons: io=5012 mmio=120 system_event=1 [coalesced_writes=N]
 *   nkvm: exit ports: 0x3f8:out=4800 0x3fd:in=160 ... [elsewhere=N]
 *   nkvm: exit mmio: 0xfebf0000:write=12 ... [elsewhere=N]
 */
void exit_stats_print(FILE *f, const struct exit_stats *s);

#endif
