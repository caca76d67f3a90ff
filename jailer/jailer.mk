# mote-jailer, its test probe and its unit test. Included from the top
# Makefile (`include jailer/jailer.mk`), whose $(BUILD), $(CC), $(CFLAGS),
# $(LDLIBS) and objs() it uses.

JAILER_SRCS := $(wildcard jailer/*.c)

# Static, like mote: it copies no libraries anywhere and starts anywhere.
JAILER_LDFLAGS ?= -static
JAILER_LDLIBS := -lcap-ng

.PHONY: jailer
jailer: $(BUILD)/mote-jailer

$(BUILD)/mote-jailer: $(call objs,$(BUILD),$(JAILER_SRCS))
	$(CC) $(CFLAGS) $(JAILER_LDFLAGS) -o $@ $^ $(JAILER_LDLIBS)

# What the integration test runs in place of mote to see the jail from
# inside. Static: the jail holds no libraries.
$(BUILD)/tests/jail_probe: tests/integration/jail_probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -static -o $@ $<

# The integration test drives both binaries (its recipe is the top
# Makefile's pattern rule; these only add prerequisites).
$(BUILD)/tests/test_jailer: $(BUILD)/mote-jailer $(BUILD)/tests/jail_probe

# The cgroup unit test links jailer/cgroup.c alone; mkdir and rmdir are
# wrapped so that a directory tree under /tmp behaves like cgroupfs
# (a new cgroup directory comes with its interface files).
$(BUILD)/tests/test_jailer_cgroup: tests/unit/test_jailer_cgroup.c jailer/cgroup.c jailer/jailer.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ tests/unit/test_jailer_cgroup.c jailer/cgroup.c -lcmocka \
		-Wl,--wrap=mkdir -Wl,--wrap=rmdir $(LDLIBS)
