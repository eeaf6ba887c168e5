/* dispatch.h: messages handed to the handler, its reply lines read back, and the outcome of each post. */
#ifndef MC_DISPATCH_H
#define MC_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jv.h>

#include "linebuf.h"
#include "outchan.h"

struct bridge;
struct pollset;

#define DISPATCH_LINE_MAX (4u << 20)   /* a reply line: 4 MiB, above the 1 MiB post cap (PLATFORM_POST_MAX) */
#define DISPATCH_ERROR_TEXT_MAX 500    /* of a handler's error, in the error reply */
#define DISPATCH_OUTPUTS_MAX 1000      /* of --filter or --reply-filter, for one input */
#define DISPATCH_BAD_SHOWN 10          /* bad reply lines reported one by one, */
#define DISPATCH_BAD_SUMMARY_MS 5000   /* then summed up at most this often */

struct dispatch {
	struct jqprog *filter, *reply_filter;
	struct outchan out;      /* message lines on stdout (co-processes have their own) */
	int in_fd;               /* reply lines from stdin; -1: none */
	bool in_eof;
	bool in_nonblock;        /* in_fd is ours and non-blocking: drain it */
	struct linebuf lb;
	long line_no;
	long bad_lines;          /* bad reply lines so far */
	long bad_unsaid;         /* of them, not reported yet */
	int64_t bad_said_at;     /* when the last summary was */
	int in_slot;             /* this turn's pollset slot of in_fd, -1: not watched */
	bool out_watched;
};

/* Compiles --filter and --reply-filter. false: reported. */
bool dispatch_setup(struct bridge *b);
/* Sets up stdout and stdin as the channels of the filter mode. */
void dispatch_open_stdio(struct bridge *b);
void dispatch_free(struct bridge *b);

/* The handler can take a message now (the window and the backend allow). */
bool dispatch_ready(struct bridge *b);
/* Hands out every message that is due while the handler can take one. */
void dispatch_hand_out(struct bridge *b, int64_t now);
/* One reply (consumed), as if read on a line: the --exec result. */
void dispatch_reply(struct bridge *b, jv reply);
/* The outbox's callback once a reply is posted or refused for good. */
void dispatch_settled(void *ctx, const char *msg_id, bool ok, const char *why);

/* One reply line read elsewhere (a co-process's), as a linebuf callback (ctx:
 * the bridge). */
void dispatch_line(void *ctx, const char *line, size_t len, bool too_long);

/* Each turn: writes what a non-blocking channel takes, and notices a reader gone. */
void dispatch_flush(struct bridge *b);
/* The descriptors to wait on, and what to do when they are ready. */
void dispatch_watch(struct bridge *b, struct pollset *ps);
void dispatch_service(struct bridge *b, const struct pollset *ps);

#endif
