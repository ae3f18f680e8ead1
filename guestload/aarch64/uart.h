/* PL011 UART of QEMU virt: serial protocol transport (see main.c). */
#ifndef GUEST_UART_H
#define GUEST_UART_H
#include "lib.h"

void uart_init(void);
/* Raw line output under the UART lock; starts on a fresh line. */
void uart_write_line(const char *prefix, const char *s);
/* One wave-pass marker, 'B', no newline. */
void uart_wave_tick(void);
/* Non-blocking read of one received byte, -1 if the RX FIFO is empty. */
int uart_getc(void);
#endif
