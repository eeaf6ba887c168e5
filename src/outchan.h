/* outchan.h: a non-blocking output channel for whole lines (stdout or a handler's stdin). */
#ifndef MC_OUTCHAN_H
#define MC_OUTCHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>
#include "util.h"

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
