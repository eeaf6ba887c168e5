/* test_session.c: the error rate the heartbeat reports: a rolling minute in one-second buckets, with a sample error. */
#include <config.h>

#include <stdint.h>
#include <string.h>

#include "tap.h"
#include "session.h"

#define MIN 60000

static double rate(struct session_errors *e, int64_t now)
{
	return session_errors_rate(e, now);
}

int main(void)
{
	struct session_errors e;
	memset(&e, 0, sizeof e);
	int64_t t = 1000000; /* any clock: the buckets follow its seconds */

	ok(rate(&e, t) == 0, "no outcome yet: rate 0");
	ok(e.sample == NULL, "no outcome yet: no sample");

	session_errors_note(&e, t, false, NULL);
	session_errors_note(&e, t + 10, false, NULL);
	session_errors_note(&e, t + 1500, false, NULL);
	session_errors_note(&e, t + 2000, true, "handler failed on message x");
	ok(rate(&e, t + 2000) == 0.25, "one error in four outcomes: 0.25");
	is_str(e.sample, "handler failed on message x", "the error is the sample");

	session_errors_note(&e, t + 3000, true, NULL);
	ok(rate(&e, t + 3000) == 0.4, "an error without a text counts: two in five");
	is_str(e.sample, "handler failed on message x", "and leaves the sample as it was");

	char long_why[300];
	memset(long_why, 'w', sizeof long_why - 1);
	long_why[sizeof long_why - 1] = '\0';
	session_errors_note(&e, t + 3000, true, long_why);
	is_int((long long)strlen(e.sample), 200, "a long error text is sampled to 200 bytes");

	/* The window rolls: what is a minute old no longer counts. */
	ok(rate(&e, t + MIN - 1) == 0.5, "59.999 s later all six still count (three errors)");
	ok(rate(&e, t + MIN) == 0.75, "a minute later the first second's two successes are gone");
	ok(rate(&e, t + MIN + 1000) == 1.0, "a second more and the last success is gone: errors only");
	ok(e.sample != NULL, "errors in the window keep the sample");
	ok(rate(&e, t + MIN + 2000) == 1.0, "the first error gone, the two of the next second remain");
	ok(rate(&e, t + MIN + 3000) == 0, "a minute after the last error: rate 0");
	ok(e.sample == NULL, "and the sample is cleared");

	/* A bucket reused after a minute starts empty: memory stays one minute's worth. */
	struct session_errors f;
	memset(&f, 0, sizeof f);
	session_errors_note(&f, t, true, "old");
	session_errors_note(&f, t + MIN, false, NULL);
	ok(rate(&f, t + MIN) == 0, "the same slot a minute later forgets the old error");
	ok(f.sample == NULL, "and its sample");
	session_errors_free(&f);

	session_errors_free(&e);
	ok(e.sample == NULL, "free clears the sample");
	return done_testing();
}
