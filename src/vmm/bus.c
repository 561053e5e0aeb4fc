// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "vmm/bus.h"

int bus_register(struct bus *bus, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque)
{
	if (!len || base + len < base)
		return -EINVAL;
	for (unsigned int i = 0; i < bus->nr; i++) {
		const struct bus_region *r = &bus->regions[i];

		if (base < r->base + r->len && r->base < base + len)
			return -EEXIST;
	}
	if (bus->nr == BUS_MAX_REGIONS)
		return -ENOSPC;
	bus->regions[bus->nr++] = (struct bus_region){ base, len, ops, opaque };
	return 0;
}

static const struct bus_region *bus_find(const struct bus *bus, uint64_t addr, unsigned int len)
{
	for (unsigned int i = 0; i < bus->nr; i++) {
		const struct bus_region *r = &bus->regions[i];

		if (addr >= r->base && addr - r->base < r->len && len <= r->len - (addr - r->base))
			return r;
	}
	return NULL;
}

bool bus_read(const struct bus *bus, uint64_t addr, void *data, unsigned int len)
{
	const struct bus_region *r = bus_find(bus, addr, len);

	if (!r || !r->ops->read) {
		memset(data, 0xff, len);
		return r != NULL;
	}
	r->ops->read(r->opaque, addr - r->base, data, len);
	return true;
}

bool bus_write(const struct bus *bus, uint64_t addr, const void *data, unsigned int len)
{
	const struct bus_region *r = bus_find(bus, addr, len);

	if (!r || !r->ops->write)
		return r != NULL;
	r->ops->write(r->opaque, addr - r->base, data, len);
	return true;
}
