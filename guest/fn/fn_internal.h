/*
 * fn_internal.h - between the runtime's CPL0 part (runtime.c) and its
 * CPL3 part (fnlib.c, linked with the function). Not for functions.
 *
 * The runtime hands the CPL3 side a job: copy request bytes out of the
 * vsock RX buffers (copying at CPL3 runs natively; the runtime's CPL0
 * code is emulated on the development machines, ~260 ns an instruction),
 * then run fn_init or fn_handle. Results come back in the job; the
 * runtime checks them (user code can write any user memory).
 */
#ifndef MOTE_FN_INTERNAL_H
#define MOTE_FN_INTERNAL_H

#include <stdint.h>

#include "user.h"

#define FN_CALL_LOG   (USER_CALL_FIRST_FREE + 0) /* a0 = text, a1 = length */
#define FN_CALL_SLEEP (USER_CALL_FIRST_FREE + 1) /* a0 = ns */

#define FN_JOB_COPY 1   /* the segments only */
#define FN_JOB_CALL 2   /* the segments, then fn_handle */
#define FN_JOB_INIT 3   /* fn_init */

/* What fn_user_entry returns when the job ran to its end. */
#define FN_RUN_DONE    1
#define FN_RUN_TIMEOUT 2   /* from the runtime's irq hook / sleep call */
#define FN_RUN_FAULT   3   /* from the runtime's fault handler */

#define FN_SEG_MAX 256

struct fn_seg {
	const uint8_t *src;
	uint8_t *dst;
	uint32_t len;
};

struct fn_job {
	uint32_t op;
	uint32_t nseg;
	struct fn_seg seg[FN_SEG_MAX];
	const uint8_t *req;
	uint32_t req_len;
	uint8_t *resp;
	uint32_t resp_cap;
	uint32_t resp_len;
	int32_t ret;
	uint8_t seed[16];
};

/* The job, in user data (fnlib.c): CPL3 code writes its results there. */
extern struct fn_job fn_job;

/* Set by the runtime at boot, read at CPL3 by fn_clock_ns(): ns =
 * ((tsc - fn_tsc_base) * fn_tsc_mult) >> 32. */
extern uint64_t fn_tsc_base, fn_tsc_mult;

uint64_t fn_user_entry(uint64_t job);

#endif /* MOTE_FN_INTERNAL_H */
