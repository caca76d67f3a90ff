/* The snapshot test guest's computation (guest/unikernel/snap_tests.c,
 * test=snap), done again on the host: the value after each step, so a
 * restored clone's output can be checked line by line. */
#ifndef MOTE_TESTS_HARNESS_SNAP_H
#define MOTE_TESTS_HARNESS_SNAP_H

#include <stdint.h>

#define SNAP_TABLE 4096
#define SNAP_MIX_ROUNDS 64

/* Fills acc[0..steps) with the accumulator after each step; returns their
 * XOR, the guest's final result. */
static inline uint64_t snap_expected(uint64_t *acc_out, unsigned steps)
{
	static uint64_t table[SNAP_TABLE];
	uint64_t acc = 0x6d6f7465ull, result = 0;

	for (unsigned i = 0; i < SNAP_TABLE; i++)
		table[i] = i * 0x9e3779b97f4a7c15ull;
	for (uint64_t s = 0; s < steps; s++) {
		for (unsigned i = 0; i < SNAP_MIX_ROUNDS; i++) {
			unsigned idx = (unsigned)((acc >> (i % 7)) + i * 31) & (SNAP_TABLE - 1);
			table[idx] = table[idx] * 6364136223846793005ull + acc + s;
			acc = ((acc << 13) | (acc >> 51)) ^ table[idx];
		}
		acc_out[s] = acc;
		result ^= acc;
	}
	return result;
}

#endif
