#ifndef GUEST_WAVE_H
#define GUEST_WAVE_H
#include "params.h"
/* Runs forever on the wave CPU. */
void wave_run(const struct wave_params *w) __attribute__((noreturn));
extern u64 wave_passes;
#endif
