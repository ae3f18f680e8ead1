/* Wave parameters: parsed from fw_cfg "opt/qmpctl/params", then validated. */
#ifndef GUEST_PARAMS_H
#define GUEST_PARAMS_H
#include "lib.h"

struct wave_params {
	u64 start, end, stride, delta, offset;
	u64 kut;     /* >0: speak kvm-unit-tests' migration handshake, asking kut times */
	u64 fail;    /* 1: report a deliberate FAIL at the end (tests the harness) */
	u64 skip;    /* 1: skip the migration as kvm-unit-tests' migrate_skip() does */
	u64 tables;  /* 0: announce no table records, as a foreign guest says nothing */
	u64 writers; /* CPUs 1..writers run the wave, each on its own slice (1..MAX_CPUS-1) */
};

struct mem_range {
	u64 base, end;          /* [base, end) */
};

/* Fills defaults, then overrides from the string.  On error returns false
 * and points *why at a one-word reason and *what at the offending key. */
bool params_parse(const char *s, struct wave_params *w, const char **why, const char **what);
/* ram: usable RAM; reserved: guest image + stacks + GIC tables (and the DTB
 * QEMU may place below the image). */
bool params_validate(const struct wave_params *w, struct mem_range ram,
		     struct mem_range reserved, const char **why);
#endif
