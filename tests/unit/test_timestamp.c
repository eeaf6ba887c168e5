/* test_timestamp.c: the platform's RFC 3339 timestamps: parsing, order, shifting, writing. */
#include <config.h>

#include "tap.h"
#include "timestamp.h"

static struct ts at(const char *s)
{
	struct ts t = { 0, 0 };
	ok(ts_parse(s, &t), "parses %s", s);
	return t;
}

static void formats_as(struct ts t, const char *want, const char *name)
{
	char out[TS_TEXT_MAX];
	ts_format(t, out);
	is_str(out, want, name);
}

int main(void)
{
	struct ts t = at("1970-01-01T00:00:00Z");
	ok(t.sec == 0 && t.nsec == 0, "the epoch is 0");
	t = at("2026-04-30T10:15:02.123456789Z");
	is_int(t.sec, 1777544102, "seconds since the epoch");
	is_int(t.nsec, 123456789, "nine fraction digits");
	t = at("2026-04-30T10:15:02.5Z");
	is_int(t.nsec, 500000000, "one fraction digit is tenths");
	ok(ts_cmp(at("2026-04-30T12:15:02+02:00"), at("2026-04-30T10:15:02Z")) == 0, "a zone offset");
	ok(ts_cmp(at("2026-04-30T05:15:02-05:00"), at("2026-04-30T10:15:02z")) == 0, "a negative offset, a small z");
	ok(ts_cmp(at("2026-04-30t10:15:02Z"), at("2026-04-30 10:15:02Z")) == 0, "t or a space between date and time");
	ok(ts_cmp(at("2026-04-30T10:15:02Z"), at("2026-04-30T10:15:02.000001Z")) < 0, "a whole second before a fraction");
	ok(ts_cmp(at("2026-04-30T10:15:02.12Z"), at("2026-04-30T10:15:02.123Z")) < 0, ".12 before .123");
	ok(ts_cmp(at("2026-04-30T10:15:02.9Z"), at("2026-04-30T10:15:03Z")) < 0, ".9 before the next second");
	ok(ts_cmp(at("2026-05-01T00:00:00Z"), at("2026-04-30T23:59:59.999Z")) > 0, "dates");
	ok(ts_cmp(at("2028-03-01T00:00:00Z"), at("2028-02-29T23:59:59Z")) > 0, "a leap day");

	const char *bad[] = { "", "2026-04-30", "2026-04-30T10:15:02", "2026-04-30T10:15:02.Z",
			      "2026-04-30T10:15:02.1234567890Z", "2026-13-30T10:15:02Z", "2026-04-30T24:15:02Z",
			      "2026-04-30T10:15:02Zjunk", "2026-04-30T10:15:02+0200", "x026-04-30T10:15:02Z" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		struct ts x;
		ok(!ts_parse(bad[i], &x), "refuses \"%s\"", bad[i]);
	}
	struct ts x;
	ok(!ts_parse(NULL, &x), "refuses NULL");

	formats_as(at("2026-04-30T10:15:02Z"), "2026-04-30T10:15:02Z", "whole seconds: no fraction");
	formats_as(at("2026-04-30T10:15:02.120Z"), "2026-04-30T10:15:02.12Z", "trailing zeros trimmed");
	formats_as(at("2026-04-30T12:15:02.000000001+02:00"), "2026-04-30T10:15:02.000000001Z", "in UTC, to the nanosecond");
	formats_as(at("2028-02-29T23:59:59Z"), "2028-02-29T23:59:59Z", "a leap day");
	formats_as(ts_add_ns(at("2026-04-30T10:15:02.999999Z"), 1000), "2026-04-30T10:15:03Z", "a microsecond later");
	formats_as(ts_add_ns(at("2026-04-30T10:15:02Z"), -1), "2026-04-30T10:15:01.999999999Z", "a nanosecond earlier");
	formats_as(ts_add_ns(at("2026-04-30T10:15:02Z"), -600LL * 1000000000), "2026-04-30T10:05:02Z", "ten minutes earlier");
	formats_as(ts_from_ms(ts_to_ms(at("2026-04-30T10:15:02.123Z"))), "2026-04-30T10:15:02.123Z", "milliseconds and back");
	formats_as(ts_from_ms(-1), "1969-12-31T23:59:59.999Z", "before the epoch");
	struct ts now = ts_now();
	ok(now.sec > 1700000000 && now.nsec >= 0 && now.nsec < 1000000000, "the wall clock");
	return done_testing();
}
