/* libc-free helpers: string/memory routines gcc may call, and the record printer. */
#include <stdarg.h>
#include "lib.h"
#include "uart.h"

void *memset(void *d, int c, size_t n)
{
	u8 *p = d;
	while (n--)
		*p++ = (u8)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	u8 *p = d;
	const u8 *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (; n; n--, a++, b++) {
		if (*a != *b)
			return (u8)*a - (u8)*b;
		if (!*a)
			return 0;
	}
	return 0;
}

u64 us_to_ticks(u64 us)
{
	return us * ticks_per_sec() / 1000000;
}

void udelay(u64 us)
{
	u64 end = now_ticks() + us_to_ticks(us);
	while (now_ticks() < end)
		cpu_relax();
}

struct buf {
	char *p;
	size_t left;
};

static void put(struct buf *b, char c)
{
	if (b->left > 1) {
		*b->p++ = c;
		b->left--;
	}
}

static void put_num(struct buf *b, u64 v, unsigned base)
{
	char tmp[24];
	int n = 0;
	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n)
		put(b, tmp[--n]);
}

static void format(char *line, size_t size, const char *fmt, va_list ap)
{
	struct buf b = { line, size };

	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&b, *fmt);
			continue;
		}
		switch (*++fmt) {
		case 'd':
			put_num(&b, va_arg(ap, u64), 10);
			break;
		case 'x':
			put(&b, '0');
			put(&b, 'x');
			put_num(&b, va_arg(ap, u64), 16);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			while (*s)
				put(&b, *s++);
			break;
		}
		case '\0':
			fmt--;
			break;
		default:
			put(&b, *fmt);
		}
	}
	*b.p = '\0';
}

void record(const char *fmt, ...)
{
	char line[320];
	va_list ap;

	va_start(ap, fmt);
	format(line, sizeof(line), fmt, ap);
	va_end(ap);
	uart_write_line("QMPCTL ", line);
}

void say(const char *fmt, ...)
{
	char line[320];
	va_list ap;

	va_start(ap, fmt);
	format(line, sizeof(line), fmt, ap);
	va_end(ap);
	uart_write_line("", line);
}

void halt(void)
{
	irq_disable();
	for (;;)
		wfi();
}
