#ifndef GUEST_WAVE_H
#define GUEST_WAVE_H
#include "params.h"
/* Splits the wave into w->writers slices (call once, before wave_run). */
void wave_setup(const struct wave_params *w);
/* Runs forever on a wave CPU, over writer `me`'s slice (0-based). */
void wave_run(const struct wave_params *w, u64 me) __attribute__((noreturn));
/* QMPCTL wave-status writers=N passes=p0,p1,... (each writer's own passes). */
void wave_print_status(void);
#endif
