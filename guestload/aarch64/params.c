/*
 * Parameter string: space-separated key=value pairs, values hex (0x...) or
 * decimal, e.g. "start=0x41000000 end=0x47000000 stride=0x1000 delta=0x1
 * offset=0x0".  Unknown keys are an error so a controller typo is loud.
 */
#include "params.h"

static bool parse_num(const char *s, size_t n, u64 *out)
{
	u64 v = 0;
	unsigned base = 10;

	if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
		n -= 2;
	}
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		if (v > (~0ULL - d) / base)
			return false;   /* overflow */
		v = v * base + d;
	}
	*out = v;
	return true;
}

static bool key_is(const char *k, size_t n, const char *name)
{
	return strlen(name) == n && strncmp(k, name, n) == 0;
}

bool params_parse(const char *s, struct wave_params *w, const char **why, const char **what)
{
	w->start = 0x41000000;
	w->end = 0x47000000;
	w->stride = 0x1000;
	w->delta = 1;
	w->offset = 0;
	w->kut = 0;
	w->fail = 0;
	w->skip = 0;
	w->tables = 1;
	w->writers = 1;

	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (!*s)
			break;
		const char *k = s;
		while (*s && *s != '=' && *s != ' ')
			s++;
		size_t klen = s - k;
		if (*s != '=') {
			*why = "syntax";
			*what = "no-equals";
			return false;
		}
		const char *v = ++s;
		while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			s++;
		u64 val;
		u64 *dst;
		if (key_is(k, klen, "start")) { dst = &w->start; *what = "start"; }
		else if (key_is(k, klen, "end")) { dst = &w->end; *what = "end"; }
		else if (key_is(k, klen, "stride")) { dst = &w->stride; *what = "stride"; }
		else if (key_is(k, klen, "delta")) { dst = &w->delta; *what = "delta"; }
		else if (key_is(k, klen, "offset")) { dst = &w->offset; *what = "offset"; }
		else if (key_is(k, klen, "kut")) { dst = &w->kut; *what = "kut"; }
		else if (key_is(k, klen, "fail")) { dst = &w->fail; *what = "fail"; }
		else if (key_is(k, klen, "skip")) { dst = &w->skip; *what = "skip"; }
		else if (key_is(k, klen, "tables")) { dst = &w->tables; *what = "tables"; }
		else if (key_is(k, klen, "writers")) { dst = &w->writers; *what = "writers"; }
		else {
			/* Echo the offending key back (truncated, printable only). */
			static char bad[24];
			size_t i;
			for (i = 0; i < klen && i < sizeof(bad) - 1; i++)
				bad[i] = (k[i] > ' ' && k[i] < 0x7f) ? k[i] : '?';
			bad[i] = '\0';
			*why = "unknown-key";
			*what = bad;
			return false;
		}
		if (!parse_num(v, s - v, &val)) {
			*why = "bad-number";
			return false;
		}
		*dst = val;
	}
	return true;
}

bool params_validate(const struct wave_params *w, struct mem_range ram,
		     struct mem_range reserved, const char **why)
{
	/* The wave touches bytes start+offset, start+stride+offset, ... < end+offset. */
	if (w->stride == 0) { *why = "stride-zero"; return false; }
	if (w->kut > 8) { *why = "kut-above-8"; return false; }
	if (w->fail > 1) { *why = "fail-not-0-or-1"; return false; }
	if (w->skip > 1) { *why = "skip-not-0-or-1"; return false; }
	if (w->tables > 1) { *why = "tables-not-0-or-1"; return false; }
	if (w->writers < 1 || w->writers > MAX_CPUS - 1) { *why = "writers-not-1-to-7"; return false; }
	if (w->start >= w->end) { *why = "empty-range"; return false; }
	if ((w->start | w->end) & 0xfff) { *why = "unaligned"; return false; }
	if (w->offset >= w->stride) { *why = "offset-not-below-stride"; return false; }
	if (w->delta == 0 || w->delta > 0xff) { *why = "delta-not-1-to-0xff"; return false; }
	if (w->end - w->start < w->stride && w->start + w->offset >= w->end) {
		*why = "empty-range";
		return false;
	}
	if ((w->end - w->start + w->stride - 1) / w->stride < w->writers) {
		*why = "fewer-blocks-than-writers";
		return false;
	}
	u64 last = w->start + (w->end - 1 - w->start) / w->stride * w->stride + w->offset;
	if (w->start < ram.base || last >= ram.end) { *why = "outside-ram"; return false; }
	if (w->start + w->offset < reserved.end && last >= reserved.base) {
		*why = "overlaps-guest";
		return false;
	}
	return true;
}
