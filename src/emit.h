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

/* Sorts an array of rows by created_at ascending (string compare of RFC 3339
 * timestamps of the same shape; rows without one go first), stable. Consumed. */
jv rows_sort(jv rows);

/* An output channel: whole lines are queued and written without ever blocking
 * the loop. For a pipe, the fd is reopened through /proc/self/fd with O_NONBLOCK
 * (a new open file description: the inherited one is left untouched); other
 * kinds are written at most PIPE_BUF bytes per writable event. */
struct outchan {
	int fd;
	bool own_fd;      /* fd was opened here and must be closed */
	bool nonblock;
	bool broken;      /* EPIPE or another write error: the reader is gone */
	struct buf pending;
};
void outchan_init(struct outchan *oc, int fd);
/* Queues line (without newline; one is added). */
void outchan_queue(struct outchan *oc, const char *line, size_t len);
/* Writes what it can now. Returns bytes still pending; sets broken on error. */
size_t outchan_flush(struct outchan *oc);
bool outchan_want_write(const struct outchan *oc);
void outchan_close(struct outchan *oc);

#endif
