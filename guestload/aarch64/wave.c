/*
 * The memory "wave": one byte per stride in [start, end) is incremented by
 * `delta` each pass, so after k passes every touched byte equals
 * k * delta (mod 256) plus its initial value.  The controller compares RAM
 * of source and destination against the number of 'B' markers it counted;
 * a 'B' is printed only after the pass is complete.
 */
#include "wave.h"
#include "uart.h"

u64 wave_passes;

void wave_run(const struct wave_params *w)
{
	const u64 start = w->start, end = w->end, stride = w->stride, off = w->offset;
	const u8 delta = (u8)w->delta;

	for (;;) {
		for (u64 p = start; p < end; p += stride)
			*(volatile u8 *)(p + off) += delta;
		/* Make the pass globally visible before announcing it. */
		dsb_sy();
		wave_passes++;
		uart_wave_tick();
	}
}
