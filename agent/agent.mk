# mote-agent (the host agent: demand scraping, Prometheus endpoint, cgroup
# shares and caps, admission) and its unit test. Included from the top
# Makefile, whose $(BUILD), $(CC), $(CFLAGS), $(LDLIBS) and objs() it uses.

AGENT_SRCS := $(wildcard agent/*.c)
AGENT_LIB_SRCS := $(filter-out agent/main.c,$(AGENT_SRCS))

.PHONY: agent
agent: $(BUILD)/mote-agent

$(BUILD)/mote-agent: $(call objs,$(BUILD),$(AGENT_SRCS))
	$(CC) $(CFLAGS) -o $@ $^ -ljansson -lm

# The unit test links the agent's pure parts (not main.c).
$(BUILD)/tests/test_agent: tests/unit/test_agent.c $(call objs,$(BUILD),$(AGENT_LIB_SRCS)) agent/agent.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ tests/unit/test_agent.c $(call objs,$(BUILD),$(AGENT_LIB_SRCS)) \
		-lcmocka -ljansson -lm $(LDLIBS)

# The integration test runs the agent (its recipe is the top Makefile's
# pattern rule; this only adds the prerequisite).
$(BUILD)/tests/test_agent_prometheus: $(BUILD)/mote-agent
$(BUILD)/tests/test_agent_place: $(BUILD)/mote-agent
