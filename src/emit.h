/* emit.h: activity rows to message lines (DESIGN.md's shape), ordering, and the
 * non-blocking output channel the lines are written to. */
#ifndef MC_EMIT_H
#define MC_EMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>
#include "util.h"

/* Builds the message object for one activity row (row consumed):
 * {"id","workspace_id","source_id","origin","method","text","parts","message_id",
 *  "context_id","task_id","created_at","request"}
 * origin: "canvas" when source_id is null, else "agent". text joins the text parts
 * (kind or type). Missing pieces become null ("parts": [] when none). Never aborts
 * on odd input: checks every kind first. Returns jv_invalid_with_msg on a row that
 * is not an object or whose id is not a UUID. */
jv message_from_row(jv row, const char *own_id);

/* Sorts an array of rows by created_at ascending (timestamp_cmp; rows without
 * one go first), stable: equal timestamps keep their input order. Consumed.
 * Not an array: []. */
jv rows_sort(jv rows);

/* Orders two RFC 3339 timestamps of the same zone: strcmp, except that the
 * fractions of a second compare as numbers (Go trims their trailing zeros, so
 * "10:00:02Z" < "10:00:02.5Z" and "...02.12Z" < "...02.123Z"). */
int timestamp_cmp(const char *a, const char *b);

/* An output channel: whole lines are queued and written without ever blocking
 * the loop. For a pipe, the fd is reopened through /proc/self/fd with O_NONBLOCK
 * (a new open file description: the inherited one is left untouched); a
 * socket is written with MSG_DONTWAIT; a descriptor that is already
 * non-blocking (a pipe we made) is used as it is; a regular file is written
 * whole; anything else (a terminal) at most PIPE_BUF bytes per flush, which
 * the loop calls only when poll says writable. */
struct outchan {
	int fd;
	bool own_fd;      /* fd was opened here and must be closed */
	bool nonblock;
	bool broken;      /* EPIPE or another write error: the reader is gone */
	int error;        /* the errno that made it broken (EPIPE: reader gone) */
	bool is_socket;   /* written with send(MSG_DONTWAIT | MSG_NOSIGNAL) */
	bool regular;     /* a regular file: writes never wait */
	struct buf pending;
	size_t sent;      /* bytes at the front of pending already written */
};
void outchan_init(struct outchan *oc, int fd);
/* Queues line (without newline; one is added). Dropped once broken. */
void outchan_queue(struct outchan *oc, const char *line, size_t len);
/* Queues v (consumed) as one JSON line, written straight into the buffer. */
void outchan_queue_json(struct outchan *oc, jv v);
/* Writes what it can now, never blocking. Returns bytes still pending (what a
 * broken channel could not write stays counted); sets broken on error. */
size_t outchan_flush(struct outchan *oc);
bool outchan_want_write(const struct outchan *oc);
/* Frees the queue and closes fd if it was opened here (never the inherited one). */
void outchan_close(struct outchan *oc);

#endif
