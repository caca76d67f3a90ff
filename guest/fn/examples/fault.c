/* fault.c - test only: a function that crashes on request.
 *   "null"   reads address 0 (page fault: page 0 is not user-accessible)
 *   "div"    divides by zero (divide error)
 *   "hlt"    executes a privileged instruction (general protection fault)
 *   "stack"  recurses until the stack's guard page (page fault)
 *   "kwrite" writes to the runtime's data (page fault: closed to CPL3)
 *   "twrite" writes to its own code (page fault: read-only at CPL3)
 *   "error"  returns an error (FN_HANDLER_ERROR) with a message
 *   anything else: answers "ok" */
#include "fn.h"

static int is(const uint8_t *req, uint32_t len, const char *word)
{
	return len == fn_strlen(word) && memcmp(req, word, len) == 0;
}

static volatile uint64_t zero;

static uint64_t __attribute__((noinline)) recurse(uint64_t n)
{
	volatile uint8_t pad[512];

	pad[0] = (uint8_t)n;
	if (n == zero - 1)      /* never: zero is 0 at run time */
		return 0;
	return recurse(n + 1) + pad[0];
}

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	(void)resp_cap;
	if (is(req, req_len, "null"))
		return *(volatile int *)(uintptr_t)zero;
	if (is(req, req_len, "div"))
		return (int)(100 / zero);
	if (is(req, req_len, "hlt"))
		__asm__ volatile("hlt");
	if (is(req, req_len, "stack"))
		return (int)recurse(0);
	if (is(req, req_len, "kwrite")) {
		extern char __user_data_end[]; /* the runtime's data starts there */
		*(volatile char *)__user_data_end = 1;
	}
	if (is(req, req_len, "twrite"))
		*(volatile uint8_t *)(uintptr_t)fn_handle = 0xc3;
	if (is(req, req_len, "error")) {
		memcpy(resp, "asked to fail", 13);
		*resp_len = 13;
		return 1;
	}
	memcpy(resp, "ok", 2);
	*resp_len = 2;
	return 0;
}
