/* See inst_state.h. */
#include "launcher/inst_state.h"

int inst_next_state(enum inst_state cur, enum inst_event ev, unsigned inflight)
{
	if (ev == IEV_EXITED)
		return cur == INST_DEAD ? -1 : INST_DEAD;
	switch (cur) {
	case INST_BOOTING:
		switch (ev) {
		case IEV_READY: return INST_READY;
		case IEV_START_TIMEOUT:
		case IEV_BROKEN:
		case IEV_STOP: return INST_STOPPING;
		default: return -1;
		}
	case INST_RESTORING:
		switch (ev) {
		case IEV_CONNECTED: return INST_READY;
		case IEV_INVOKE_BEGIN: return INST_RESTORING; /* its first caller rides along */
		case IEV_START_TIMEOUT:
		case IEV_BROKEN:
		case IEV_STOP: return INST_STOPPING;
		default: return -1;
		}
	case INST_STANDBY:
		switch (ev) {
		case IEV_TAKEN: return INST_RESTORING;
		case IEV_START_TIMEOUT:
		case IEV_BROKEN:
		case IEV_IDLE_TTL:
		case IEV_STOP: return INST_STOPPING;
		default: return -1;
		}
	case INST_READY:
		switch (ev) {
		case IEV_INVOKE_BEGIN:
		case IEV_INVOKE_END: return INST_READY;
		case IEV_BROKEN: return INST_STOPPING;
		case IEV_IDLE_TTL: return inflight ? INST_READY : INST_STOPPING;
		case IEV_STOP: return inflight ? INST_DRAINING : INST_STOPPING;
		default: return -1;
		}
	case INST_DRAINING:
		switch (ev) {
		case IEV_INVOKE_END: return inflight ? INST_DRAINING : INST_STOPPING;
		case IEV_BROKEN: return INST_STOPPING;
		case IEV_STOP:
		case IEV_IDLE_TTL: return INST_DRAINING;
		default: return -1;
		}
	case INST_STOPPING:
		/* Whatever was in flight still ends, one way or the other. */
		switch (ev) {
		case IEV_INVOKE_END:
		case IEV_BROKEN:
		case IEV_STOP:
		case IEV_IDLE_TTL:
		case IEV_START_TIMEOUT: return INST_STOPPING;
		default: return -1;
		}
	default:
		return -1;
	}
}

const char *inst_state_name(enum inst_state s)
{
	static const char *const names[INST_NR_STATES] = {
		"booting", "restoring", "standby", "ready", "draining", "stopping", "dead",
	};
	return (unsigned)s < INST_NR_STATES ? names[s] : "?";
}
