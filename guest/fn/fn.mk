# fn.mk - function images, included by the top-level Makefile.
#
#   make fn FN=guest/fn/examples/sha256.c   ->  $(BUILD)/fn/sha256.elf
#   make fn-examples                        ->  every guest/fn/examples/*.c
#
# The examples are part of `make all` (the integration tests boot them,
# MOTE_FN_DIR points there).

FN_BUILD := $(BUILD)/fn
FN_GUEST_BUILD := $(BUILD)/guest
FN_GUEST_LIB := $(FN_GUEST_BUILD)/libguest.a
FN_EXAMPLES := $(basename $(notdir $(wildcard guest/fn/examples/*.c)))
FN_IMAGES := $(addprefix $(FN_BUILD)/,$(addsuffix .elf,$(FN_EXAMPLES)))
FN_RUNTIME := $(wildcard guest/fn/*.c guest/fn/*.h) guest/fn/Makefile

.PHONY: fn fn-examples
all: fn-examples
fn-examples: $(FN_IMAGES)

# After the test guest: both builds share the unikernel's objects.
$(FN_GUEST_LIB): $(GUEST_ELF) $(wildcard guest/unikernel/*)
	$(MAKE) -C guest/unikernel BUILD=$(abspath $(FN_GUEST_BUILD)) lib

$(FN_BUILD)/%.elf: guest/fn/examples/%.c $(FN_GUEST_LIB) $(FN_RUNTIME)
	$(MAKE) -C guest/fn BUILD=$(abspath $(FN_BUILD)) \
		GUEST_BUILD=$(abspath $(FN_GUEST_BUILD)) FN=$(abspath $<)

fn: $(FN_GUEST_LIB)
	@test -n "$(FN)" || { echo "usage: make fn FN=path/to/function.c"; exit 2; }
	$(MAKE) -C guest/fn BUILD=$(abspath $(FN_BUILD)) \
		GUEST_BUILD=$(abspath $(FN_GUEST_BUILD)) FN=$(abspath $(FN))
	@echo "function image: $(FN_BUILD)/$(basename $(notdir $(FN))).elf"
