/* fuzz_reply.c: libFuzzer target for reply lines: framing (linebuf) in uneven
 * chunks, then each line parsed and validated as the bridge does, and the
 * accepted replies turned into the bodies that would be posted.
 *
 * Input: byte 0 picks the line cap, byte 1 seeds the chunk sizes, the rest is
 * the stream a handler would print. Framing must not depend on how the stream
 * is cut: every chunking is checked against feeding it in one piece. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "log.h"
#include "platform.h"
#include "linebuf.h"
#include "parts.h"
#include "reply.h"
#include "util.h"

#include "fuzz_jq.h"

/* What a run of the framer produced: one record per line, compared between
 * chunkings. A long stream of lines is summarised by a hash. */
struct seen {
	size_t max;
	size_t lines;
	uint64_t hash;
	bool parse; /* also parse and validate each line (only on one of the runs) */
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 0x100000001b3ULL;
	return h;
}

static void check_body(char *body)
{
	/* What would be posted must be one JSON object. */
	jv v = jv_parse(body);
	CHECK(jv_get_kind(v) == JV_KIND_OBJECT);
	jv_free(v);
	free(body);
}

/* The bridge's on_line + handle_reply, without the inbox. */
static void handle_line(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len)
		return;
	if (jq16_parse_leaks(line, len))
		return; /* not JSON to the bridge either: see fuzz_jq.h */
	jv v = jv_parse_sized(line, (int)len);
	if (!jv_is_valid(v)) {
		jv msg = jv_invalid_get_msg(v);
		if (jv_get_kind(msg) == JV_KIND_STRING)
			CHECK(jv_string_value(msg) != NULL);
		jv_free(msg);
		return;
	}
	struct reply r;
	char *err = NULL;
	if (reply_parse(v, &r, &err) != 0) {
		CHECK(err != NULL && err[0] != '\0');
		free(err);
		reply_free(&r);
		return;
	}
	CHECK(err == NULL);
	if (r.id)
		CHECK(r.id[0] != '\0');
	switch (r.kind) {
	case REPLY_TEXT:
	case REPLY_PARTS:
		CHECK(jv_get_kind(r.parts) == JV_KIND_ARRAY && jv_array_length(jv_copy(r.parts)) > 0);
		free(parts_text(r.parts));
		jv_free(parts_text_jv(r.parts));
		/* A peer's reply and a canvas reply, as answer() builds them. */
		check_body(platform_a2a_body(jv_copy(r.parts), "ctx-1", "3f0c7c1e-2d4b-4f6a-9a57-8b1e2c3d4e5f",
					     "6a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"));
		check_body(platform_notify_body(jv_copy(r.parts)));
		break;
	case REPLY_ERROR:
		CHECK(r.error != NULL);
		break;
	case REPLY_RETRY:
		CHECK(r.id != NULL);
		break;
	case REPLY_ACK:
		CHECK(r.id != NULL);
		break;
	case REPLY_SEND:
		/* A new message: no id, parts to post, "to" a peer's UUID or the canvas. */
		CHECK(r.id == NULL);
		CHECK(jv_get_kind(r.parts) == JV_KIND_ARRAY && jv_array_length(jv_copy(r.parts)) > 0);
		CHECK(r.to == NULL || uuid_valid(r.to));
		check_body(platform_a2a_body(jv_copy(r.parts), r.context_id, NULL, "6a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"));
		break;
	}
	reply_free(&r);
}

static void on_line(void *ctx, const char *line, size_t len, bool too_long)
{
	struct seen *s = ctx;
	s->lines++;
	s->hash = mix(s->hash, &too_long, sizeof too_long);
	if (too_long) {
		CHECK(line == NULL);
		CHECK(len > s->max);
		return;
	}
	CHECK(line != NULL);
	CHECK(len <= s->max);
	CHECK(line[len] == '\0');
	CHECK(memchr(line, '\n', len) == NULL);
	/* One trailing '\r' was stripped; "x\r\r\n" leaves "x\r" (JSON whitespace). */
	s->hash = mix(s->hash, &len, sizeof len);
	s->hash = mix(s->hash, line, len);
	if (s->parse)
		handle_line(line, len);
}

static const size_t caps[] = { 0, 1, 2, 7, 16, 64, 255, 1024, 4096, 4u << 20 };

static uint32_t next_rand(uint32_t *st)
{
	/* xorshift32: deterministic per input, so a crash replays. */
	uint32_t x = *st ? *st : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*st = x;
	return x;
}

static struct seen run(const char *data, size_t n, size_t max, uint32_t seed, bool parse)
{
	struct seen s = { .max = max, .lines = 0, .hash = 0xcbf29ce484222325ULL, .parse = parse };
	struct linebuf lb;
	linebuf_init(&lb, max);
	size_t off = 0;
	uint32_t st = seed;
	while (off < n) {
		size_t chunk;
		if (!seed) {
			chunk = n - off;
		} else {
			uint32_t r = next_rand(&st);
			/* Mostly tiny pieces, sometimes empty ones, sometimes large. */
			chunk = (r & 7) == 0 ? 0 : (r & 7) < 6 ? (r >> 3) % 8 + 1 : (r >> 3) % 512 + 1;
			if (chunk > n - off)
				chunk = n - off;
		}
		linebuf_feed(&lb, data + off, chunk, on_line, &s);
		off += chunk;
	}
	linebuf_finish(&lb, on_line, &s);
	/* Finishing twice reports nothing more. */
	size_t lines = s.lines;
	linebuf_finish(&lb, on_line, &s);
	CHECK(s.lines == lines);
	/* The buffer never grows past max + 2. */
	CHECK(lb.cap <= max + 2 || lb.cap <= 256);
	linebuf_free(&lb);
	return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(-1, false);
	jq16_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	size_t max = caps[data[0] % (sizeof caps / sizeof *caps)];
	uint32_t seed = (uint32_t)data[1] * 2654435761u + 1;
	const char *text = (const char *)data + 2;
	size_t n = size - 2;

	struct seen whole = run(text, n, max, 0, false);
	struct seen cut = run(text, n, max, seed, true);
	CHECK(whole.lines == cut.lines);
	CHECK(whole.hash == cut.hash);
	return 0;
}
