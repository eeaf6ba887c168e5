/* support.c: small helpers the fake platform's files share: dying, clocks, randomness, JSON fields. */
#include <config.h>

#include <errno.h>
#include <math.h>
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

int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

void format_rfc3339(int64_t us, char out[32])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06ldZ", (long)(us % 1000000));
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
