// SPDX-License-Identifier: MIT
/* A NIC's counters for vm.counters and `nkvm stat`: virtio-net's own, as the device keeps them. */
#include "cmd/run_devices.h"
#include "virtio/net.h"

void run_net_counters(void *dev, void (*emit)(void *ctx, const char *name, uint64_t value),
		      void *ctx)
{
	struct virtio_net_stats st;

	virtio_net_get_stats(dev, &st);
	emit(ctx, "rx_packets", st.rx_packets);
	emit(ctx, "rx_bytes", st.rx_bytes);
	emit(ctx, "rx_dropped", st.rx_dropped);
	emit(ctx, "tx_packets", st.tx_packets);
	emit(ctx, "tx_bytes", st.tx_bytes);
	emit(ctx, "tx_dropped", st.tx_dropped);
	emit(ctx, "tx_errors", st.tx_errors);
}
