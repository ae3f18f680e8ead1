/*
 * The memory "wave": one byte per stride in [start, end) is incremented by
 * `delta` each pass, so after k passes every touched byte equals
 * k * delta (mod 256) plus its initial value.  The controller compares RAM
 * of source and destination against the number of 'B' markers it counted;
 * a 'B' is printed only after the pass is complete.
 *
 * With writers = N > 1 (CPUs 1..N; CPU0 stays the LPI issuer) every writer
 * runs the wave over its own slice, as the x86 guest's vCPUs do: the wave's
 * B blocks split into N runs of whole blocks in address order, floor(B/N)
 * each, the last B mod N runs one block longer (qmpctl.verify.wave's
 * wave_slices computes the same).  Each slice keeps the one-edge invariant
 * on its own.  A 'B' is then a round: printed when the smallest per-writer
 * pass count goes up, so "a pass" still means "every writer moved"; with
 * one writer that is every pass, as before.  The per-writer pass counts
 * live in the image (announced by its-guest image=...) and are printed by
 * wave_print_status ('S').
 */
#include "wave.h"
#include "uart.h"

static u64 slice_lo[MAX_CPUS], slice_hi[MAX_CPUS];   /* gpa of counters */
static volatile u64 writer_passes[MAX_CPUS];
static u64 nwriters = 1;
static u32 round_lock;
static u64 rounds;                                   /* 'B's printed */

void wave_setup(const struct wave_params *w)
{
	u64 n = w->writers ? w->writers : 1;
	u64 blocks = (w->end - w->start + w->stride - 1) / w->stride;
	u64 q = blocks / n, r = blocks % n, first = 0;

	for (u64 i = 0; i < n; i++) {
		u64 len = q + (i >= n - r ? 1 : 0);

		slice_lo[i] = w->start + first * w->stride + w->offset;
		slice_hi[i] = slice_lo[i] + len * w->stride;
		first += len;
	}
	nwriters = n;
}

/* After writer `me`'s pass: print the rounds every writer has finished. */
static void tick(void)
{
	u64 least = writer_passes[0];

	for (u64 i = 1; i < nwriters; i++)
		if (writer_passes[i] < least)
			least = writer_passes[i];
	if (__atomic_exchange_n(&round_lock, 1, __ATOMIC_ACQUIRE))
		return;   /* another writer is printing; the next tick catches up */
	while (rounds < least) {
		rounds++;
		uart_wave_tick();
	}
	__atomic_store_n(&round_lock, 0, __ATOMIC_RELEASE);
}

void wave_run(const struct wave_params *w, u64 me)
{
	const u64 lo = slice_lo[me], hi = slice_hi[me], stride = w->stride;
	const u8 delta = (u8)w->delta;

	for (;;) {
		for (u64 p = lo; p < hi; p += stride)
			*(volatile u8 *)p += delta;
		/* Make the pass globally visible before announcing it. */
		dsb_sy();
		writer_passes[me]++;
		dsb_sy();
		tick();
	}
}

void wave_print_status(void)
{
	char list[MAX_CPUS * 21 + 1], *p = list;

	for (u64 i = 0; i < nwriters; i++) {
		char tmp[21];
		int n = 0;
		u64 v = writer_passes[i];

		if (i)
			*p++ = ',';
		do {
			tmp[n++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		while (n)
			*p++ = tmp[--n];
	}
	*p = '\0';
	record("wave-status writers=%d passes=%s", nwriters, list);
}
