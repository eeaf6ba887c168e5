/* support.c: small helpers the fake platform's files share: dying, clocks, randomness, JSON fields. */
#include <config.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "fake.h"

void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fake-platform: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void random_bytes(void *out, size_t n)
{
	unsigned char *p = out;
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			die("getrandom: %s", strerror(errno));
		}
		p += got;
		n -= (size_t)got;
	}
}

double random_unit(void)
{
	uint64_t x;
	random_bytes(&x, sizeof x);
	return (double)(x >> 11) * 0x1.0p-53;
}

void format_rfc3339(int64_t ns, char out[40])
{
	/* Floor division, so that a time before 1970 still has a fraction in 0..1e9. */
	int64_t secs = ns / 1000000000, frac = ns % 1000000000;
	if (frac < 0) {
		frac += 1000000000;
		secs--;
	}
	time_t t = (time_t)secs;
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	if (frac) {
		int digits = 9;
		while (frac % 10 == 0) {
			frac /= 10;
			digits--;
		}
		n += (size_t)snprintf(out + n, 40 - n, ".%0*ld", digits, (long)frac);
	}
	snprintf(out + n, 40 - n, "Z");
}

/* n digits at s as a number, or -1 when they are not all digits. */
static long digits(const char *s, int n)
{
	long v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

bool parse_rfc3339(const char *s, int64_t *ns)
{
	long year = digits(s, 4), mon, day, hour, min, sec;
	if (year < 0 || s[4] != '-' || (mon = digits(s + 5, 2)) < 1 || mon > 12 || s[7] != '-' ||
	    (day = digits(s + 8, 2)) < 1 || day > 31 || (s[10] != 'T' && s[10] != 't') ||
	    (hour = digits(s + 11, 2)) < 0 || hour > 23 || s[13] != ':' ||
	    (min = digits(s + 14, 2)) < 0 || min > 59 || s[16] != ':' ||
	    (sec = digits(s + 17, 2)) < 0 || sec > 60)
		return false;
	const char *p = s + 19;
	int64_t frac = 0;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++)
			if (n < 9)
				frac = frac * 10 + (*p - '0');
		if (n == 0 || n > 9)
			return false;
		for (; n < 9; n++)
			frac *= 10;
	}
	long offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		long oh = digits(p + 1, 2), om;
		if (oh < 0 || oh > 23 || p[3] != ':' || (om = digits(p + 4, 2)) < 0 || om > 59)
			return false;
		offset = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	struct tm tm = { .tm_year = (int)year - 1900, .tm_mon = (int)mon - 1, .tm_mday = (int)day,
			 .tm_hour = (int)hour, .tm_min = (int)min, .tm_sec = (int)sec };
	int64_t secs = (int64_t)timegm(&tm) - offset;
	*ns = secs * 1000000000 + frac;
	return true;
}

bool is_integer(double d)
{
	return d == floor(d) && fabs(d) < 9.2e18;
}

char *bytes_dup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Decodes standard base64 (padding optional, no whitespace) into a malloc'd buffer. */
bool base64_decode(const char *in, char **out, size_t *outlen)
{
	size_t n = strlen(in), o = 0;
	uint32_t acc = 0;
	int bits = 0;
	char *p = xmalloc(n / 4 * 3 + 3);

	while (n > 0 && in[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		const char c = in[i];
		int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
			: c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
		if (v < 0) {
			free(p);
			return false;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			p[o++] = (char)(acc >> bits & 0xff);
		}
	}
	*out = p;
	*outlen = o;
	return true;
}

jv_kind field_kind(jv obj, const char *key)
{
	if (!json_has(obj, key))
		return JV_KIND_INVALID;
	jv v = json_field(obj, key);
	jv_kind k = jv_get_kind(v);
	jv_free(v);
	return k;
}

const char *field_str(jv obj, const char *key)
{
	jv v = json_field(obj, key);
	/* obj holds a reference to the string, so its bytes outlive v. */
	const char *s = jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : NULL;
	jv_free(v);
	return s;
}

bool field_num(jv obj, const char *key, double *out)
{
	jv v = json_field(obj, key);
	bool ok = jv_get_kind(v) == JV_KIND_NUMBER;
	if (ok)
		*out = jv_number_value(v);
	jv_free(v);
	return ok;
}

bool field_true(jv obj, const char *key)
{
	return field_kind(obj, key) == JV_KIND_TRUE;
}

jv jv_str_or_null(const char *s)
{
	return s ? jv_string(s) : jv_null();
}

jv parse_json(const char *s, size_t len)
{
	jv v = jv_parse_sized(s, (int)len);
	if (!jv_is_valid(v)) {
		jv_free(v);
		return jv_invalid();
	}
	return v;
}
