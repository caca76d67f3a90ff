# libFuzzer targets, built with clang straight from the library sources they
# exercise (no KVM needed). Included from the top Makefile.
#   make fuzz                     fuzz each target (fuzz_virtq, fuzz_api, fuzz_snapshot) for FUZZ_SECONDS (default 30)
#   make fuzz-seeds               replay the checked-in corpus only (quick)
# New inputs go to $(BUILD)/fuzz/corpus/<target>, crashes to $(BUILD)/fuzz/.
# Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev).

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -std=gnu11 -D_GNU_SOURCE -I. -Wall -Wextra -Werror
FUZZ_ARGS    := -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

FUZZ_VIRTQ_SRCS := tests/fuzz/fuzz_virtq.c vmm/mem.c vmm/dirty_log.c virtio/queue.c
# The API's request path (HTTP parsing, routing, JSON validation) with a
# stub VMM; links the Debian http_parser and jansson libraries.
FUZZ_API_SRCS := tests/fuzz/fuzz_api.c api/server.c api/routes.c api/schema.c virtio/net_config.c \
	virtio/devargs.c api/schema_snapshot.c vmm/log.c \
	vmm/caps.c vmm/seccomp.c
FUZZ_API_LIBS := -lhttp_parser -ljansson -lseccomp -lpthread
# The virtio-net device behind the MMIO transport, a socketpair as its TAP.
FUZZ_NET_SRCS := tests/fuzz/fuzz_net.c virtio/net.c virtio/net_config.c virtio/devargs.c virtio/tap.c \
	virtio/mmio.c virtio/queue.c virtio/ratelimit.c vmm/mem.c vmm/bus.c vmm/loop.c vmm/log.c \
	vmm/irq.c vmm/ioapic.c vmm/dirty_log.c
# The snapshot state-file parser: the file is input a user hands to restore.
FUZZ_SNAPSHOT_SRCS := tests/fuzz/fuzz_snapshot.c snapshot/state.c

.PHONY: fuzz fuzz-build fuzz-seeds

fuzz-build: $(BUILD)/fuzz/fuzz_virtq $(BUILD)/fuzz/fuzz_api $(BUILD)/fuzz/fuzz_snapshot \
	$(BUILD)/fuzz/fuzz_net

$(BUILD)/fuzz/fuzz_net: $(FUZZ_NET_SRCS) virtio/net.h virtio/mmio.h virtio/queue.h tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_NET_SRCS) -lpthread

$(BUILD)/fuzz/fuzz_snapshot: $(FUZZ_SNAPSHOT_SRCS) snapshot/state.h tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_SNAPSHOT_SRCS) -lz

$(BUILD)/fuzz/fuzz_virtq: $(FUZZ_VIRTQ_SRCS) virtio/queue.h vmm/mem.h vmm/layout.h tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_VIRTQ_SRCS)

$(BUILD)/fuzz/fuzz_api: $(FUZZ_API_SRCS) api/api.h api/schema.h vmm/log.h tests/fuzz/fuzz.mk
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DMOTE_VERSION='"$(VERSION)"' -o $@ $(FUZZ_API_SRCS) $(FUZZ_API_LIBS)

fuzz: $(BUILD)/fuzz/fuzz_virtq $(BUILD)/fuzz/fuzz_api $(BUILD)/fuzz/fuzz_snapshot $(BUILD)/fuzz/fuzz_net
	@mkdir -p $(BUILD)/fuzz/corpus/virtq $(BUILD)/fuzz/corpus/api $(BUILD)/fuzz/corpus/snapshot \
		$(BUILD)/fuzz/corpus/net
	$(BUILD)/fuzz/fuzz_net $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -max_len=70000 \
		-artifact_prefix=$(BUILD)/fuzz/net- $(BUILD)/fuzz/corpus/net tests/fuzz/corpus/net
	$(BUILD)/fuzz/fuzz_snapshot $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		-artifact_prefix=$(BUILD)/fuzz/snapshot- $(BUILD)/fuzz/corpus/snapshot tests/fuzz/corpus/snapshot
	$(BUILD)/fuzz/fuzz_virtq $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus/virtq tests/fuzz/corpus/virtq
	$(BUILD)/fuzz/fuzz_api $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
		-artifact_prefix=$(BUILD)/fuzz/api- $(BUILD)/fuzz/corpus/api tests/fuzz/corpus/api

fuzz-seeds: $(BUILD)/fuzz/fuzz_virtq $(BUILD)/fuzz/fuzz_api $(BUILD)/fuzz/fuzz_snapshot \
	$(BUILD)/fuzz/fuzz_net
	$(BUILD)/fuzz/fuzz_net $(FUZZ_ARGS) -runs=0 tests/fuzz/corpus/net
	$(BUILD)/fuzz/fuzz_snapshot $(FUZZ_ARGS) -runs=0 tests/fuzz/corpus/snapshot
	$(BUILD)/fuzz/fuzz_virtq $(FUZZ_ARGS) -runs=0 tests/fuzz/corpus/virtq
	$(BUILD)/fuzz/fuzz_api $(FUZZ_ARGS) -runs=0 tests/fuzz/corpus/api
