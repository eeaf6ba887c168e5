/* timestamp.h: the platform's RFC 3339 timestamps: parsed to an instant, ordered, shifted, written. */
#ifndef MC_TIMESTAMP_H
#define MC_TIMESTAMP_H

#include <stdbool.h>
#include <stdint.h>

/* An instant: seconds since the epoch (UTC) and nanoseconds. */
struct ts {
	int64_t sec;
	int32_t nsec;
};

/* Room for what ts_format writes, with its NUL. */
#define TS_TEXT_MAX 40

/* "YYYY-MM-DDTHH:MM:SS[.F]Z" with 1 to 9 fraction digits, 'T' also 't' or a
 * space, the zone 'Z', 'z' or +HH:MM / -HH:MM. false for anything else (the
 * whole string must match). */
bool ts_parse(const char *s, struct ts *out);
/* <0, 0, >0 as a is before, equal to, after b. */
int ts_cmp(struct ts a, struct ts b);
/* a shifted by ns nanoseconds (negative: earlier). */
struct ts ts_add_ns(struct ts a, int64_t ns);
/* Milliseconds since the epoch, and back. */
int64_t ts_to_ms(struct ts a);
struct ts ts_from_ms(int64_t ms);
/* The wall clock now. */
struct ts ts_now(void);
/* RFC 3339 in UTC, the fraction's trailing zeros trimmed as the platform
 * writes them ("2026-04-30T10:15:02.5Z", "2026-04-30T10:15:02Z"). */
void ts_format(struct ts a, char out[TS_TEXT_MAX]);

#endif
