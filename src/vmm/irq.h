/* SPDX-License-Identifier: MIT */
/*
 * The VM's GSI routing: KVM_SET_GSI_ROUTING replaces the whole table, so one owner keeps it:
 * the PC's pins (GSI 0-15 to both PICs and the IOAPIC, 16-23 to the IOAPIC), plus one MSI route
 * per MSI-X vector that a device enables. Completions reach the guest through irqfds bound to
 * these GSIs, without a vCPU exit.
 */
#ifndef NKVM_VMM_IRQ_H
#define NKVM_VMM_IRQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

#define IRQ_IOAPIC_PINS 24
#define IRQ_MAX_MSI 1024

struct irq_routing {
	pthread_mutex_t lock;
	struct vm *vm;
	unsigned int nr_msi; /* GSIs handed out after the IOAPIC's */
	struct {
		bool used, enabled;
		uint64_t addr;
		uint32_t data;
	} msi[IRQ_MAX_MSI];
};

int irq_routing_init(struct irq_routing *r, struct vm *vm);
/* A new GSI for an MSI route (disabled until irq_msi_set). Returns the GSI or -ENOSPC. */
int irq_msi_alloc(struct irq_routing *r);
/* Points gsi at (addr, data), or removes its route when !enabled; commits to KVM. */
int irq_msi_set(struct irq_routing *r, unsigned int gsi, bool enabled, uint64_t addr,
		uint32_t data);

/* Several routes at once, with one commit (a device's vectors change together). */
struct irq_msi_route {
	unsigned int gsi;
	bool enabled;
	uint64_t addr;
	uint32_t data;
};
int irq_msi_set_routes(struct irq_routing *r, const struct irq_msi_route *routes, unsigned int n);

/* Binds eventfd fd to gsi (KVM_IRQFD); a write to fd then injects the interrupt. */
int irq_irqfd_assign(struct vm *vm, int fd, unsigned int gsi);
int irq_irqfd_deassign(struct vm *vm, int fd, unsigned int gsi);

#endif
