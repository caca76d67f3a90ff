/* The life of one function instance (one mote process), as a pure
 * transition function so every path is unit-tested:
 *
 *                                            STANDBY --taken--> RESTORING
 *                                               | idle TTL, stop   |
 *                                               v (to STOPPING)    |
 *   BOOTING ---ready line---> READY <---first stream OK--- RESTORING
 *      |                     |  ^ invoke begin/end             |
 *      |                     |  |                              |
 *      +--timeout/exit--+    +--+--stop while busy--> DRAINING |
 *                       v    | idle TTL / VM broke     | last end
 *                     STOPPING <-----------------------+---------+
 *                       | exit (reaped)
 *                       v
 *                      DEAD
 *
 * The daemon acts on entering a state: STOPPING kills the monitor, DEAD
 * removes its directory and frees its slot. */
#ifndef MOTE_LAUNCHER_INST_STATE_H
#define MOTE_LAUNCHER_INST_STATE_H

enum inst_state {
	INST_BOOTING,    /* cold boot: waiting for the runtime's ready line */
	INST_RESTORING,  /* clone of the warm snapshot: waiting for its first stream */
	INST_STANDBY,    /* clone restored and paused (mote --standby) until a start takes it */
	INST_READY,      /* serving: idle or with invocations in flight */
	INST_DRAINING,   /* asked to stop while busy: finishes, takes no more */
	INST_STOPPING,   /* killed, waiting to be reaped */
	INST_DEAD,
	INST_NR_STATES
};

enum inst_event {
	IEV_READY,         /* cold boot: ready line (and snapshot) done */
	IEV_CONNECTED,     /* restore: a stream got "OK" from the runtime */
	IEV_INVOKE_BEGIN,
	IEV_INVOKE_END,    /* an invocation finished; the VM is fine */
	IEV_BROKEN,        /* the VM failed an invocation (stream died, bad reply, deadline) */
	IEV_START_TIMEOUT,
	IEV_IDLE_TTL,
	IEV_STOP,          /* function deleted, daemon shutting down */
	IEV_EXITED,        /* the process was reaped */
	IEV_TAKEN,         /* standby: a start takes it (it is told to run) */
};

/* The state after ev, given the invocations in flight after the event is
 * accounted (an END has already decremented it). -1 when ev cannot happen
 * in cur (a daemon bug, which the caller logs). */
int inst_next_state(enum inst_state cur, enum inst_event ev, unsigned inflight);

const char *inst_state_name(enum inst_state s);
/* Takes new invocations. */
static inline int inst_state_accepts(enum inst_state s)
{
	return s == INST_READY;
}
/* Counts as live (holds a process). */
static inline int inst_state_live(enum inst_state s)
{
	return s != INST_DEAD;
}

#endif
