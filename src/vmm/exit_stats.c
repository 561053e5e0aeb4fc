// SPDX-License-Identifier: MIT
#include <stdlib.h>

#include "vmm/exit_stats.h"

/*
 * A site's key: for port I/O the port with the direction in bit 16, for MMIO the page number
 * with the direction in bit 63 (guest-physical addresses have at most 52 bits). Stored + 1 so
 * that 0 marks a free slot.
 */
#define SITE_WRITE_IO (1ULL << 16)
#define SITE_WRITE_MMIO (1ULL << 63)
#define MMIO_PAGE_SHIFT 12

static void count_site(struct exit_sites *t, uint64_t key, uint64_t n)
{
	/* Fibonacci hashing, then linear probing over the whole (small) table at most. */
	unsigned int i = (unsigned int)(((key + 1) * 0x9e3779b97f4a7c15ULL) >>
					(64 - EXIT_STATS_SITES_SHIFT));

	for (unsigned int probe = 0; probe < EXIT_STATS_SITES;
	     probe++, i = (i + 1) % EXIT_STATS_SITES) {
		struct exit_site *e = &t->slot[i];

		if (!e->key)
			e->key = key + 1;
		if (e->key == key + 1) {
			e->count += n;
			return;
		}
	}
	t->elsewhere += n;
}

void exit_stats_count(struct exit_stats *s, const struct kvm_run *run, bool sites)
{
	uint32_t r = run->exit_reason;

	s->reasons[r < EXIT_STATS_REASONS ? r : EXIT_STATS_REASONS]++;
	if (!sites)
		return;
	if (r == KVM_EXIT_IO)
		count_site(&s->io,
			   run->io.port |
				   (run->io.direction == KVM_EXIT_IO_OUT ? SITE_WRITE_IO : 0),
			   1);
	else if (r == KVM_EXIT_MMIO)
		count_site(&s->mmio,
			   (run->mmio.phys_addr >> MMIO_PAGE_SHIFT) |
				   (run->mmio.is_write ? SITE_WRITE_MMIO : 0),
			   1);
}

static void add_sites(struct exit_sites *to, const struct exit_sites *from)
{
	for (unsigned int i = 0; i < EXIT_STATS_SITES; i++) {
		const struct exit_site *e = &from->slot[i];

		if (e->key)
			count_site(to, e->key - 1, e->count);
	}
	to->elsewhere += from->elsewhere;
}

void exit_stats_add(struct exit_stats *to, const struct exit_stats *from)
{
	for (unsigned int r = 0; r <= EXIT_STATS_REASONS; r++)
		to->reasons[r] += from->reasons[r];
	to->coalesced += from->coalesced;
	add_sites(&to->io, &from->io);
	add_sites(&to->mmio, &from->mmio);
}

static const char *reason_name(unsigned int r)
{
	static const char *const names[EXIT_STATS_REASONS] = {
		[KVM_EXIT_UNKNOWN] = "unknown",
		[KVM_EXIT_EXCEPTION] = "exception",
		[KVM_EXIT_IO] = "io",
		[KVM_EXIT_HYPERCALL] = "hypercall",
		[KVM_EXIT_DEBUG] = "debug",
		[KVM_EXIT_HLT] = "hlt",
		[KVM_EXIT_MMIO] = "mmio",
		[KVM_EXIT_IRQ_WINDOW_OPEN] = "irq_window_open",
		[KVM_EXIT_SHUTDOWN] = "shutdown",
		[KVM_EXIT_FAIL_ENTRY] = "fail_entry",
		[KVM_EXIT_INTR] = "intr",
		[KVM_EXIT_SET_TPR] = "set_tpr",
		[KVM_EXIT_TPR_ACCESS] = "tpr_access",
		[KVM_EXIT_NMI] = "nmi",
		[KVM_EXIT_INTERNAL_ERROR] = "internal_error",
		[KVM_EXIT_SYSTEM_EVENT] = "system_event",
		[KVM_EXIT_IOAPIC_EOI] = "ioapic_eoi",
		[KVM_EXIT_X86_RDMSR] = "x86_rdmsr",
		[KVM_EXIT_X86_WRMSR] = "x86_wrmsr",
		[KVM_EXIT_X86_BUS_LOCK] = "x86_bus_lock",
		[KVM_EXIT_NOTIFY] = "notify",
	};

	return r < EXIT_STATS_REASONS ? names[r] : NULL;
}

static int by_count_desc(const void *a, const void *b)
{
	const struct exit_site *x = a, *y = b;

	if (x->count != y->count)
		return x->count < y->count ? 1 : -1;
	return x->key < y->key ? -1 : x->key > y->key;
}

static void print_sites(FILE *f, const char *what, const struct exit_sites *t, bool io)
{
	struct exit_site sorted[EXIT_STATS_SITES];
	unsigned int n = 0;

	for (unsigned int i = 0; i < EXIT_STATS_SITES; i++)
		if (t->slot[i].key)
			sorted[n++] = t->slot[i];
	qsort(sorted, n, sizeof(sorted[0]), by_count_desc);
	fprintf(f, "nkvm: exit %s:", what);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t key = sorted[i].key - 1;
		unsigned long long count = sorted[i].count;

		if (io)
			fprintf(f, " %#llx:%s=%llu", (unsigned long long)(key & 0xffff),
				key & SITE_WRITE_IO ? "out" : "in", count);
		else
			fprintf(f, " %#llx:%s=%llu",
				(unsigned long long)((key & ~SITE_WRITE_MMIO) << MMIO_PAGE_SHIFT),
				key & SITE_WRITE_MMIO ? "write" : "read", count);
	}
	if (t->elsewhere)
		fprintf(f, " elsewhere=%llu", (unsigned long long)t->elsewhere);
	fputc('\n', f);
}

void exit_stats_print(FILE *f, const struct exit_stats *s)
{
	fprintf(f, "nkvm: exit reasons:");
	for (unsigned int r = 0; r <= EXIT_STATS_REASONS; r++) {
		const char *name = reason_name(r);

		if (!s->reasons[r])
			continue;
		if (name)
			fprintf(f, " %s=%llu", name, (unsigned long long)s->reasons[r]);
		else if (r < EXIT_STATS_REASONS)
			fprintf(f, " reason%u=%llu", r, (unsigned long long)s->reasons[r]);
		else
			fprintf(f, " reason>=%u=%llu", r, (unsigned long long)s->reasons[r]);
	}
	if (s->coalesced)
		fprintf(f, " coalesced_writes=%llu", (unsigned long long)s->coalesced);
	fputc('\n', f);
	print_sites(f, "ports", &s->io, true);
	print_sites(f, "mmio", &s->mmio, false);
}
