#!/usr/bin/env bash
# `make demo`: prepare the default guest and boot it, running a command that shows what the
# guest sees. On a host whose KVM cannot run a standard guest (no /dev/kvm, or PVM), it says so
# and boots it inside the nested test host instead.
set -euo pipefail
cd "$(dirname "$0")/.."
./nkvm setup
show='echo "kernel: $(uname -r)"; echo "cpus:   $(nproc)"; grep MemTotal /proc/meminfo'
if tests/nested/needed -v; then
	echo "demo: booting the default guest inside the nested test host (QEMU TCG + AMD-V)"
	exec tests/nested/run --timeout 600 -- ./nkvm run -c 2 -m 512M -- sh -c "$show"
fi
exec ./nkvm run -c 2 -m 512M -- sh -c "$show"
