// SPDX-License-Identifier: MIT
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/irq.h"
#include "vmm/vm.h"

#define IRQ_PIC_PINS 16

static void route_irqchip(struct kvm_irq_routing_entry *e, unsigned int gsi, unsigned int chip,
			  unsigned int pin)
{
	memset(e, 0, sizeof(*e));
	e->gsi = gsi;
	e->type = KVM_IRQ_ROUTING_IRQCHIP;
	e->u.irqchip.irqchip = chip;
	e->u.irqchip.pin = pin;
}

/* Rebuilds KVM's table: what KVM had by default for the pins, then the live MSI routes. */
static int irq_commit(struct irq_routing *r)
{
	size_t max = IRQ_PIC_PINS + IRQ_IOAPIC_PINS + r->nr_msi;
	struct kvm_irq_routing *table = calloc(1, sizeof(*table) + max * sizeof(table->entries[0]));
	struct kvm_irq_routing_entry *e;
	int err = 0;

	if (!table)
		return -ENOMEM;
	e = table->entries;
	/* As KVM's default table: ISA lines to both PICs and the IOAPIC pin of the same number. */
	for (unsigned int gsi = 0; gsi < IRQ_PIC_PINS; gsi++)
		route_irqchip(e++, gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
			      gsi % 8);
	for (unsigned int gsi = 0; gsi < IRQ_IOAPIC_PINS; gsi++)
		route_irqchip(e++, gsi, KVM_IRQCHIP_IOAPIC, gsi);
	for (unsigned int i = 0; i < r->nr_msi; i++) {
		if (!r->msi[i].enabled)
			continue;
		memset(e, 0, sizeof(*e));
		e->gsi = IRQ_IOAPIC_PINS + i;
		e->type = KVM_IRQ_ROUTING_MSI;
		e->u.msi.address_lo = (uint32_t)r->msi[i].addr;
		e->u.msi.address_hi = (uint32_t)(r->msi[i].addr >> 32);
		e->u.msi.data = r->msi[i].data;
		e++;
	}
	table->nr = e - table->entries;
	if (r->vm && ioctl(r->vm->vm_fd, KVM_SET_GSI_ROUTING, table) < 0)
		err = -errno;
	free(table);
	return err;
}

int irq_routing_init(struct irq_routing *r, struct vm *vm)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->vm = vm;
	return irq_commit(r);
}

int irq_msi_alloc(struct irq_routing *r)
{
	int gsi = -ENOSPC;

	pthread_mutex_lock(&r->lock);
	if (r->nr_msi < IRQ_MAX_MSI) {
		r->msi[r->nr_msi].used = true;
		gsi = IRQ_IOAPIC_PINS + r->nr_msi++;
	}
	pthread_mutex_unlock(&r->lock);
	return gsi;
}

int irq_msi_set_routes(struct irq_routing *r, const struct irq_msi_route *routes, unsigned int n)
{
	bool changed = false;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	for (unsigned int k = 0; k < n; k++) {
		unsigned int gsi = routes[k].gsi, i = gsi - IRQ_IOAPIC_PINS;

		if (gsi < IRQ_IOAPIC_PINS || i >= IRQ_MAX_MSI || !r->msi[i].used) {
			err = -EINVAL;
			continue;
		}
		if (r->msi[i].enabled != routes[k].enabled || r->msi[i].addr != routes[k].addr ||
		    r->msi[i].data != routes[k].data) {
			r->msi[i].enabled = routes[k].enabled;
			r->msi[i].addr = routes[k].addr;
			r->msi[i].data = routes[k].data;
			changed = true;
		}
	}
	if (changed) {
		int cerr = irq_commit(r);

		err = err ? err : cerr;
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

int irq_msi_set(struct irq_routing *r, unsigned int gsi, bool enabled, uint64_t addr, uint32_t data)
{
	struct irq_msi_route route = { .gsi = gsi, .enabled = enabled, .addr = addr, .data = data };

	return irq_msi_set_routes(r, &route, 1);
}

static int irqfd(struct vm *vm, int fd, unsigned int gsi, uint32_t flags)
{
	struct kvm_irqfd req = { .fd = fd, .gsi = gsi, .flags = flags };

	/*
	 * A VM without KVM (nkvm img bench): no interrupt to bind the eventfd to; the driver in
	 * this process reads the eventfd itself (virtio_pci_vector_fd).
	 */
	if (vm->vm_fd < 0)
		return 0;
	return ioctl(vm->vm_fd, KVM_IRQFD, &req) < 0 ? -errno : 0;
}

int irq_irqfd_assign(struct vm *vm, int fd, unsigned int gsi)
{
	return irqfd(vm, fd, gsi, 0);
}

int irq_irqfd_deassign(struct vm *vm, int fd, unsigned int gsi)
{
	return irqfd(vm, fd, gsi, KVM_IRQFD_FLAG_DEASSIGN);
}
