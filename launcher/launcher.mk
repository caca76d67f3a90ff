# mote-fnd (the serverless launcher daemon), mote-fn (its CLI) and their
# tests. Included from the top Makefile (`include launcher/launcher.mk`).

LAUNCHER_LIB_SRCS := launcher/evloop.c launcher/http.c launcher/spec.c launcher/admit.c \
	launcher/inst_state.c launcher/fnwire.c launcher/proc.c launcher/hclient.c \
	launcher/spawner.c launcher/cpudemand.c metrics/demand.c launcher/fnd.c launcher/fnd_inst.c launcher/fnd_inv.c launcher/fnd_api.c launcher/fnd_metrics.c \
	vmm/log.c
LAUNCHER_LIBS := -lhttp_parser -ljansson

.PHONY: launcher
launcher: $(BUILD)/mote-fnd $(BUILD)/mote-fn

$(BUILD)/launcher.a: $(patsubst %.c,$(BUILD)/lobj/%.o,$(LAUNCHER_LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/lobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/mote-fnd: $(BUILD)/lobj/launcher/fnd_main.o $(BUILD)/launcher.a
	$(CC) $(CFLAGS) -o $@ $^ $(LAUNCHER_LIBS)

$(BUILD)/mote-fn: $(BUILD)/lobj/launcher/fn_cli.o $(BUILD)/launcher.a
	$(CC) $(CFLAGS) -o $@ $^ $(LAUNCHER_LIBS)

# Unit tests of the pure parts link the launcher's archive.
$(BUILD)/tests/test_launcher_core: tests/unit/test_launcher_core.c $(BUILD)/launcher.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/launcher.a -lcmocka $(LAUNCHER_LIBS) $(LDLIBS)

# The integration test drives the daemon and the CLI, and uses the
# launcher's own HTTP client.
$(BUILD)/tests/test_launcher: tests/integration/test_launcher.c tests/integration/harness.h \
		$(BUILD)/launcher.a $(BUILD)/mote-fnd $(BUILD)/mote-fn
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/launcher.a -lcmocka $(LAUNCHER_LIBS) $(LDLIBS)

-include $(shell find $(BUILD)/lobj -name '*.d' 2>/dev/null)

# The density and start-rate bench (benches/density/run.sh).
$(BUILD)/benches/density: benches/density/density.c $(BUILD)/launcher.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/launcher.a $(LAUNCHER_LIBS)

.PHONY: bench-density
bench-density: all $(BUILD)/benches/density
	./benches/density/run.sh $(BUILD)

# libFuzzer target of the launcher's parsers (tests/fuzz/fuzz_launcher.c):
# `make fuzz` fuzzes it too, `make fuzz-seeds` replays its corpus.
FUZZ_LAUNCHER_SRCS := tests/fuzz/fuzz_launcher.c launcher/fnwire.c launcher/spec.c

$(BUILD)/fuzz/fuzz_launcher: $(FUZZ_LAUNCHER_SRCS) launcher/fnwire.h launcher/spec.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(FUZZ_LAUNCHER_SRCS) -ljansson

.PHONY: fuzz-launcher fuzz-launcher-seeds
fuzz: fuzz-launcher
fuzz-seeds: fuzz-launcher-seeds
fuzz-launcher: $(BUILD)/fuzz/fuzz_launcher
	@mkdir -p $(BUILD)/fuzz/corpus/launcher
	$(BUILD)/fuzz/fuzz_launcher $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		-artifact_prefix=$(BUILD)/fuzz/launcher- $(BUILD)/fuzz/corpus/launcher \
		tests/fuzz/corpus/launcher
fuzz-launcher-seeds: $(BUILD)/fuzz/fuzz_launcher
	$(BUILD)/fuzz/fuzz_launcher $(FUZZ_ARGS) -runs=0 tests/fuzz/corpus/launcher
