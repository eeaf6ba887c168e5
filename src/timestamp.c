/* timestamp.c: the platform's RFC 3339 timestamps: parsed to an instant, ordered, shifted, written. */
#include <config.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "timestamp.h"

#define NS_PER_SEC 1000000000L

/* n decimal digits at s as a number, or -1 when one of them is not a digit. */
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

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (no
 * timegm: it depends on the C library and on TZ files for nothing). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

bool ts_parse(const char *s, struct ts *out)
{
	if (!s || strnlen(s, 20) < 19)
		return false;
	long year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
	long hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (year < 0 || s[4] != '-' || mon < 1 || mon > 12 || s[7] != '-' || day < 1 || day > 31 ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || hour < 0 || hour > 23 || s[13] != ':' ||
	    min < 0 || min > 59 || s[16] != ':' || sec < 0 || sec > 60)
		return false;
	const char *p = s + 19;
	long frac = 0;
	if (*p == '.') {
		int n = 0;
		for (p++; *p >= '0' && *p <= '9'; p++, n++) {
			if (n == 9)
				return false;
			frac = frac * 10 + (*p - '0');
		}
		if (n == 0)
			return false;
		for (; n < 9; n++)
			frac *= 10;
	}
	long offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		long oh = digits(p + 1, 2), om = oh < 0 ? -1 : digits(p + 4, 2);
		if (oh < 0 || oh > 23 || p[3] != ':' || om < 0 || om > 59)
			return false;
		offset = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	out->sec = days_from_civil(year, mon, day) * 86400 + hour * 3600 + min * 60 + sec - offset;
	out->nsec = (int32_t)frac;
	return true;
}

int ts_cmp(struct ts a, struct ts b)
{
	if (a.sec != b.sec)
		return a.sec < b.sec ? -1 : 1;
	return a.nsec < b.nsec ? -1 : a.nsec > b.nsec;
}

struct ts ts_add_ns(struct ts a, int64_t ns)
{
	int64_t n = (int64_t)a.nsec + ns % NS_PER_SEC;
	a.sec += ns / NS_PER_SEC;
	if (n < 0) {
		n += NS_PER_SEC;
		a.sec--;
	} else if (n >= NS_PER_SEC) {
		n -= NS_PER_SEC;
		a.sec++;
	}
	a.nsec = (int32_t)n;
	return a;
}

int64_t ts_to_ms(struct ts a)
{
	return a.sec * 1000 + a.nsec / 1000000;
}

struct ts ts_from_ms(int64_t ms)
{
	struct ts a = { .sec = ms / 1000, .nsec = (int32_t)(ms % 1000) * 1000000 };
	if (a.nsec < 0) {
		a.nsec += NS_PER_SEC;
		a.sec--;
	}
	return a;
}

struct ts ts_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (struct ts){ .sec = (int64_t)t.tv_sec, .nsec = (int32_t)t.tv_nsec };
}

void ts_format(struct ts a, char out[TS_TEXT_MAX])
{
	/* civil_from_days, the inverse of days_from_civil. */
	int64_t days = a.sec >= 0 ? a.sec / 86400 : (a.sec - 86399) / 86400;
	int64_t rem = a.sec - days * 86400;
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int64_t d = doy - (153 * mp + 2) / 5 + 1;
	int64_t m = mp + (mp < 10 ? 3 : -9);
	int64_t y = yoe + era * 400 + (m <= 2);
	int n = snprintf(out, TS_TEXT_MAX, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld", (long long)y, (long long)m,
			 (long long)d, (long long)(rem / 3600), (long long)(rem / 60 % 60), (long long)(rem % 60));
	if (a.nsec > 0 && n > 0 && n < TS_TEXT_MAX - 12) {
		char frac[12];
		snprintf(frac, sizeof frac, ".%09ld", (long)a.nsec);
		size_t len = strlen(frac);
		while (frac[len - 1] == '0')
			len--;
		frac[len] = '\0';
		n += snprintf(out + n, (size_t)(TS_TEXT_MAX - n), "%s", frac);
	}
	if (n > 0 && n < TS_TEXT_MAX - 1)
		snprintf(out + n, (size_t)(TS_TEXT_MAX - n), "Z");
}
