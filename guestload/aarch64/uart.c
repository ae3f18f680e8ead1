/*
 * PL011 driver.  Several CPUs print (the wave CPU prints 'B' after every
 * pass, CPU0 prints records), so every write happens under one spinlock and
 * records always begin at the start of a line: if the previous character
 * on the wire was not a newline (typically a 'B'), a newline is sent first.
 */
#include "uart.h"

#define UART_BASE 0x09000000UL
#define UART_DR   (UART_BASE + 0x00)
#define UART_FR   (UART_BASE + 0x18)
#define UART_LCRH (UART_BASE + 0x2c)
#define UART_CR   (UART_BASE + 0x30)
#define UART_IMSC (UART_BASE + 0x38)

#define FR_RXFE (1u << 4)   /* receive FIFO empty */
#define FR_TXFF (1u << 5)   /* transmit FIFO full */

static u32 uart_lock;
static char last_char = '\n';

static void lock(void)
{
	/* Acquire-ordered test-and-set; the MMU makes this Normal memory, so
	 * exclusives are architecturally valid. */
	while (__atomic_exchange_n(&uart_lock, 1, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&uart_lock, __ATOMIC_RELAXED))
			cpu_relax();
}

static void unlock(void)
{
	__atomic_store_n(&uart_lock, 0, __ATOMIC_RELEASE);
}

void uart_init(void)
{
	/* No firmware ran before us: enable UART, TX and RX, FIFOs on, and no
	 * UART interrupts (RX is polled). */
	writel(UART_CR, 0);
	writel(UART_IMSC, 0);
	writel(UART_LCRH, (3u << 5) | (1u << 4));   /* 8 bits, FIFO enabled */
	writel(UART_CR, (1u << 0) | (1u << 8) | (1u << 9));
}

static void putc_raw(char c)
{
	while (readl(UART_FR) & FR_TXFF)
		cpu_relax();
	writel(UART_DR, (u8)c);
	last_char = c;
}

static void puts_raw(const char *s)
{
	while (*s)
		putc_raw(*s++);
}

void uart_write_line(const char *prefix, const char *s)
{
	lock();
	if (last_char != '\n')
		putc_raw('\n');
	puts_raw(prefix);
	puts_raw(s);
	putc_raw('\n');
	unlock();
}

void uart_wave_tick(void)
{
	lock();
	putc_raw('B');
	unlock();
}

int uart_getc(void)
{
	if (readl(UART_FR) & FR_RXFE)
		return -1;
	return (int)(readl(UART_DR) & 0xff);
}
