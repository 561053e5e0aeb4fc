# nkvm — build, test, demo. `make` builds ./nkvm; `make check` runs every test; `make demo` boots
# the default guest. See README.md.
CC      ?= gcc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE -Isrc -I.
LDLIBS  += -lpthread -lz -lzstd -laio -luring -lslirp
# `nkvm setup` decompresses the bzImage's vmlinux: LZ4 (Debian's kernels) and xz besides the above.
LDLIBS  += -llz4 -llzma
# The control socket (src/api): HTTP server, JSON, and the HTTP client of list/pause/stat.
LDLIBS  += -lmicrohttpd -ljson-c -lcurl
# The sandbox (src/sandbox): each thread's seccomp filter.
LDLIBS  += -lseccomp
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

SRCS    := $(sort $(wildcard src/*.c src/*/*.c src/*/*/*.c))
ASMS    := src/guest_blob.S
OBJS    := $(SRCS:%.c=build/%.o) $(ASMS:%.S=build/%.o)
LIBOBJS := $(filter-out build/src/main.o,$(OBJS))
SANOBJS := $(filter-out build/san/src/main.o,$(SRCS:%.c=build/san/%.o)) build/san/src/guest_blob.o
UNIT    := $(patsubst tests/unit/%.c,build/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all check unit integration deps demo fuzz crash bench clean format print-ldlibs
# Keep the sanitizer objects between runs (they are intermediates of the test binaries).
.SECONDARY:
all: nkvm

nkvm: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# The test build: the same monitor with sandbox_test_hook (-DNKVM_TEST_HOOKS), so that the
# integration tests can make one thread type do what its filter forbids. Objects of its own.
HOOKOBJS := $(SRCS:%.c=build/hooks/%.o) build/src/guest_blob.o

build/nkvm-hooks: $(HOOKOBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

build/hooks/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DNKVM_TEST_HOOKS -MMD -MP -c -o $@ $<

build/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -MMD -MP -c -o $@ $<

# The guest's init is a static binary embedded in nkvm, so `nkvm setup` needs no other file.
guest/init: guest/init.c guest/abi.h
	$(CC) -static -Os -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ guest/init.c

build/src/guest_blob.o build/san/src/guest_blob.o: src/guest_blob.S guest/init
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

build/tests/%: tests/unit/%.c tests/unit/fixture.c $(SANOBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS) -lcmocka

# test_qcow2_flush records the image's writes and syncs in order: it wraps the libc calls.
build/tests/test_qcow2_flush: LDLIBS += -Wl,--wrap=pwrite,--wrap=pwritev,--wrap=fallocate \
	-Wl,--wrap=ftruncate,--wrap=fdatasync,--wrap=fsync

# test_qcow2_alloc holds and fails chosen data writes: it wraps pwritev.
build/tests/test_qcow2_alloc: LDLIBS += -Wl,--wrap=pwritev

# test_vhost_net stands in for /dev/vhost-net and the transport's view of the queues.
build/tests/test_vhost_net: LDLIBS += -Wl,--wrap=open,--wrap=ioctl \
	-Wl,--wrap=virtio_queue_vhost_view,--wrap=virtio_memory

# test_virtio_fs stands in for the FUSE server behind the device.
build/tests/test_virtio_fs: LDLIBS += -Wl,--wrap=fuse_server_handle,--wrap=fuse_server_destroy

# test_landlock_abi answers Landlock's ABI query itself (none, or an older kernel's).
build/tests/test_landlock_abi: LDLIBS += -Wl,--wrap=syscall

# test_fuse_server_noopenat2 runs test_fuse_server where openat2 answers ENOSYS.
build/tests/test_fuse_server_noopenat2: LDLIBS += -Wl,--wrap=syscall
# Both count the server's seekdir calls (READDIR never seeks back while a guest reads on).
build/tests/test_fuse_server build/tests/test_fuse_server_noopenat2: LDLIBS += -Wl,--wrap=seekdir

# The fuzz targets (tests/fuzz/run) link against the whole monitor, built by clang with the
# fuzzer's instrumentation, as an archive: each target takes only the objects it needs, and the
# link set is the tree's own (SRCS, LDLIBS), not a list kept beside it.
CLANG   ?= clang
FUZZFLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Isrc -I. -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=undefined
FUZZOBJS := $(filter-out build/fuzz/obj/src/main.o,$(SRCS:%.c=build/fuzz/obj/%.o))

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZFLAGS) -MMD -MP -c -o $@ $<

build/fuzz/libnkvm.a: $(FUZZOBJS)
	rm -f $@
	ar rcs $@ $^

# For tests/fuzz/run: the libraries a target links with.
print-ldlibs:
	@echo $(LDLIBS)

# The crash-consistency writer (tests/crash/run): the block layer as nkvm builds it, no sanitizers.
build/tests/crash_writer: tests/crash/writer.c $(filter build/src/block/% build/src/lib/% build/src/sandbox/%,$(OBJS))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@scripts/install-deps.sh

# Unit tests (no KVM) under ASan/UBSan, then the integration suite on a real /dev/kvm (inside the
# nested test host when this host's KVM cannot run a standard guest).
check: deps nkvm build/nkvm-hooks $(UNIT) build/tests/fs_helper
	@tests/run-all $(UNIT)

unit: nkvm $(UNIT)
	@tests/run-unit $(UNIT)

integration: nkvm build/nkvm-hooks build/tests/fs_helper
	@tests/integration/run

# What the virtio-fs integration tests run in the test host and the guest (from a share).
build/tests/fs_helper: tests/integration/fs_helper.c
	@mkdir -p $(dir $@)
	$(CC) -static -Os -Wall -Wextra -Werror -D_GNU_SOURCE -o $@ $<

fuzz: deps
	@tests/fuzz/run

crash: nkvm build/tests/crash_writer
	@tests/crash/run

demo: deps nkvm
	@scripts/demo.sh

bench: deps nkvm
	@bench/boot.sh

clean:
	rm -rf build nkvm guest/init

# Kernel style at 100 columns (.clang-format).
format: deps
	clang-format -i $(SRCS) $(wildcard src/*.h src/*/*.h src/*/*/*.h guest/*.c guest/*.h tests/*/*.c)

-include $(shell find build -name '*.d' 2>/dev/null)
