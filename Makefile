# mote — build, test, demo and benchmarks.
#   make            build mote (and the guest images)
#   make demo       install what is missing, build, boot a microVM, print its boot time
#   make test       the whole suite: unit tests, sanitizer build, integration under /dev/kvm
#   make bench      boot benchmark against QEMU microvm (writes benches/results/)
#   make bench-api  API benchmark: socket ready, PUT round trip (benches/results/api.md)

BUILD    ?= build
CC       ?= gcc
VERSION  := 0.1.0

WARN     := -Wall -Wextra -Werror -Wmissing-prototypes -Wstrict-prototypes \
            -Wold-style-definition -Wshadow -Wformat=2 -Wno-format-nonliteral \
            -Wpointer-arith -Wvla
CFLAGS   ?= -O2 -g
override CFLAGS += -std=gnu11 $(WARN) -D_GNU_SOURCE -DMOTE_VERSION='"$(VERSION)"' -I. -MMD -MP
LDLIBS   := -luring -lhttp_parser -ljansson -lpthread -lseccomp -lz

SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

VMM_SRCS := $(filter-out vmm/main.c,$(wildcard vmm/*.c))
VIRTIO_SRCS := $(wildcard virtio/*.c)
API_SRCS := $(wildcard api/*.c)
METRICS_SRCS := $(wildcard metrics/*.c)
SNAPSHOT_SRCS := $(wildcard snapshot/*.c)
LIB_SRCS := $(VMM_SRCS) $(VIRTIO_SRCS) $(API_SRCS) $(METRICS_SRCS) $(SNAPSHOT_SRCS)

UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
INTEG_TESTS := $(patsubst tests/integration/%.c,%,$(wildcard tests/integration/test_*.c))

GUEST_ELF := $(BUILD)/guest/test-guest.elf
LINUX_DIR := $(BUILD)/linux

.PHONY: all mote guest linux deps demo test unit asan-unit integration bench bench-api clean format

all: mote guest jailer agent launcher

mote: $(BUILD)/mote $(BUILD)/mote-uffd-handler

deps:
	@./scripts/install-deps.sh

# --- the monitor ------------------------------------------------------------
define objs
$(patsubst %.c,$(1)/obj/%.o,$(2))
endef

include jailer/jailer.mk
include agent/agent.mk
include tests/fuzz/fuzz.mk
include guest/fn/fn.mk
include launcher/launcher.mk

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libmote.a: $(call objs,$(BUILD),$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

# Static: no dynamic loading at exec (it costs start-up time), and the
# jailer can copy the one file into a chroot that has no libraries.
MOTE_LDFLAGS ?= -static
$(BUILD)/mote: $(BUILD)/obj/vmm/main.o $(BUILD)/obj/gen/seccomp_bpf.o $(BUILD)/libmote.a
	$(CC) $(CFLAGS) $(MOTE_LDFLAGS) -o $@ $^ $(LDLIBS)

# The seccomp filters as BPF, compiled here rather than at every start-up
# (vmm/tools/seccomp_gen.c; the tables stay in vmm/seccomp.c).
$(BUILD)/seccomp-gen: vmm/tools/seccomp_gen.c $(BUILD)/libmote.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/gen/seccomp_bpf.c: $(BUILD)/seccomp-gen
	@mkdir -p $(dir $@)
	$(BUILD)/seccomp-gen > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/seccomp_bpf.o: $(BUILD)/gen/seccomp_bpf.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# This test compares the generated filters with a fresh compile.
$(BUILD)/tests/test_seccomp_precompiled: tests/unit/test_seccomp_precompiled.c \
		$(BUILD)/obj/gen/seccomp_bpf.o $(BUILD)/libmote.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

# The example page-fault handler for snapshot/load's Uffd memory backend.
$(BUILD)/mote-uffd-handler: snapshot/examples/uffd_handler.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $<

# --- guest images -----------------------------------------------------------
guest: $(GUEST_ELF)

$(GUEST_ELF): $(wildcard guest/unikernel/*)
	$(MAKE) -C guest/unikernel BUILD=$(abspath $(BUILD))/guest

linux:
	./guest/linux/build-all.sh $(LINUX_DIR)

# --- tests ------------------------------------------------------------------
$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(BUILD)/libmote.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmote.a -lcmocka $(LDLIBS)

$(BUILD)/tests/%: tests/integration/%.c $(wildcard tests/integration/harness*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< -lcmocka $(LDLIBS)

unit: $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
	@./scripts/run-tests.sh "unit$(SUITE_TAG)" $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))

# The same unit tests under ASan+UBSan, in their own build tree.
asan-unit:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CFLAGS="-O1 -g $(SAN_FLAGS)" \
		LDLIBS="$(LDLIBS) $(SAN_FLAGS)" SUITE_TAG=-asan unit

asan: asan-unit
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan CFLAGS="-O1 -g $(SAN_FLAGS)" \
		LDLIBS="$(LDLIBS) $(SAN_FLAGS)" MOTE_LDFLAGS= mote

integration: all linux $(addprefix $(BUILD)/tests/,$(INTEG_TESTS))
	@st=0; ./scripts/check-kvm.sh || st=$$?; \
	if [ $$st = 2 ]; then exit 0; elif [ $$st != 0 ]; then exit 1; fi; \
	MOTE_BIN=$(abspath $(BUILD))/mote MOTE_GUEST=$(abspath $(GUEST_ELF)) \
		MOTE_LINUX_DIR=$(abspath $(LINUX_DIR)) \
		MOTE_JAILER=$(abspath $(BUILD))/mote-jailer \
		MOTE_AGENT=$(abspath $(BUILD))/mote-agent \
		MOTE_JAIL_PROBE=$(abspath $(BUILD))/tests/jail_probe \
		MOTE_FN_DIR=$(abspath $(BUILD))/fn \
		./scripts/run-tests.sh integration $(addprefix $(BUILD)/tests/,$(INTEG_TESTS))

# Every stage runs even if an earlier one failed; the tally decides.
test: deps
	$(MAKE) --no-print-directory all
	@rm -f $(BUILD)/test-tally; st=0; \
	MOTE_TEST_TALLY=$(abspath $(BUILD))/test-tally $(MAKE) --no-print-directory unit || st=1; \
	MOTE_TEST_TALLY=$(abspath $(BUILD))/test-tally $(MAKE) --no-print-directory asan || st=1; \
	$(MAKE) --no-print-directory fuzz-seeds || st=1; \
	MOTE_TEST_TALLY=$(abspath $(BUILD))/test-tally $(MAKE) --no-print-directory integration || st=1; \
	./scripts/test-summary.sh $(BUILD)/test-tally && exit $$st
demo: deps
	$(MAKE) --no-print-directory all
	@./scripts/demo.sh $(BUILD)

bench: deps all linux
	./benches/boot/run.sh $(BUILD)

bench-api: deps all
	./benches/api/run.sh $(BUILD)

format:
	clang-format -i $(wildcard vmm/*.c vmm/*.h virtio/*.c virtio/*.h api/*.c api/*.h jailer/*.c jailer/*.h tests/*/*.c tests/*/*.h)

clean:
	rm -rf $(BUILD)
	$(MAKE) -C guest/unikernel clean BUILD=$(abspath $(BUILD))/guest || true

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
