/* The seccomp BPF that the build generated (and the mote binary loads
 * instead of compiling at start-up) is exactly what compiling the tables
 * in vmm/seccomp.c gives now, for every thread kind and both modes; and
 * seccomp_prepare takes it. A table edited without the generated file
 * being rebuilt would fail here. Linked with the generated object. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <linux/filter.h>

#include "vmm/seccomp.h"

static void test_generated_matches_tables(void **state)
{
	(void)state;
	const struct seccomp_precompiled *pre = seccomp_precompiled();

	assert_non_null(pre);
	for (int m = 0; m < 2; m++) {
		for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
			struct sock_fprog fresh;

			assert_int_equal(seccomp_compile_table(k, (enum seccomp_mode)m, &fresh), 0);
			assert_true(fresh.len > 10);
			assert_int_equal(pre->len[m][k], fresh.len);
			assert_memory_equal(pre->insns[m][k], fresh.filter,
					    fresh.len * sizeof(struct sock_filter));
			free(fresh.filter);
		}
	}
	/* KILL and TRAP differ (the default action), so the modes were not
	 * mixed up. */
	assert_memory_not_equal(pre->insns[0][SECCOMP_VCPU], pre->insns[1][SECCOMP_VCPU],
				pre->len[0][SECCOMP_VCPU] * sizeof(struct sock_filter));
}

static void test_compile_rejects_off_and_bad_kind(void **state)
{
	(void)state;
	struct sock_fprog p;

	assert_int_equal(seccomp_compile_table(SECCOMP_VMM, SECCOMP_OFF, &p), -22);
	assert_int_equal(seccomp_compile_table(SECCOMP_NR_THREADS, SECCOMP_KILL, &p), -22);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_generated_matches_tables),
		cmocka_unit_test(test_compile_rejects_off_and_bad_kind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
