/* outchan.c: whole lines written to a descriptor without ever blocking the loop. */
#include <config.h>

#include "outchan.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

void outchan_init(struct outchan *oc, int fd)
{
	memset(oc, 0, sizeof *oc);
	oc->fd = fd;

	struct stat st;
	if (fstat(fd, &st) < 0) {
		oc->broken = true;
		oc->error = errno;
		return;
	}
	oc->is_socket = S_ISSOCK(st.st_mode);
	oc->regular = S_ISREG(st.st_mode);

	/* A pipe or socket we created ourselves (the co-process) is already
	 * non-blocking: use it as it is. */
	int flags = fcntl(fd, F_GETFL);
	if (flags >= 0 && (flags & O_NONBLOCK)) {
		oc->nonblock = true;
		return;
	}
	if (oc->is_socket) {
		/* MSG_DONTWAIT makes each send non-blocking without touching
		 * the flags of a descriptor shared with our parent. */
		oc->nonblock = true;
		return;
	}
	if (S_ISFIFO(st.st_mode)) {
		/* Opening the pipe again through /proc gives a new open file
		 * description, so O_NONBLOCK here leaves the inherited one (and the
		 * parent shell's) untouched. Fails without /proc, or with ENXIO
		 * when the reader is already gone: then plain writes, and the
		 * error shows on the first one. */
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (nfd >= 0) {
			oc->fd = nfd;
			oc->own_fd = true;
			oc->nonblock = true;
		}
	}
}

void outchan_queue(struct outchan *oc, const char *line, size_t len)
{
	if (oc->broken)
		return; /* nobody will read it */
	buf_append(&oc->pending, line, len);
	buf_append(&oc->pending, "\n", 1);
}

void outchan_queue_json(struct outchan *oc, jv v)
{
	if (oc->broken) {
		jv_free(v);
		return;
	}
	json_write(&oc->pending, v);
	buf_append(&oc->pending, "\n", 1);
}

size_t outchan_flush(struct outchan *oc)
{
	while (oc->pending.len > oc->sent && !oc->broken) {
		size_t n = oc->pending.len - oc->sent;
		/* A blocking descriptor is only written when poll said so, and
		 * then at most PIPE_BUF bytes, which a writable pipe or terminal
		 * takes without blocking. A regular file never waits for a reader. */
		bool one_chunk = !oc->nonblock && !oc->regular;
		if (one_chunk && n > PIPE_BUF)
			n = PIPE_BUF;
		const char *from = oc->pending.p + oc->sent;
		ssize_t w = oc->is_socket
			? send(oc->fd, from, n, MSG_DONTWAIT | MSG_NOSIGNAL)
			: write(oc->fd, from, n);
		if (w > 0) {
			/* Advance instead of moving the rest to the front after every
			 * write: a 1 MiB line in 64 KiB pipe writes would be copied
			 * sixteen times over. */
			oc->sent += (size_t)w;
			if (oc->sent == oc->pending.len) {
				oc->pending.len = oc->sent = 0;
				oc->pending.p[0] = '\0';
			} else if (oc->sent > oc->pending.len / 2) {
				buf_consume(&oc->pending, oc->sent);
				oc->sent = 0;
			}
			if (one_chunk)
				break;
		} else if (w < 0 && errno == EINTR) {
			continue;
		} else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			break;
		} else {
			oc->broken = true;
			oc->error = w < 0 ? errno : EIO;
		}
	}
	return oc->pending.len - oc->sent;
}

bool outchan_want_write(const struct outchan *oc)
{
	return oc->pending.len > oc->sent && !oc->broken;
}

void outchan_close(struct outchan *oc)
{
	if (oc->own_fd && oc->fd >= 0)
		close(oc->fd);
	oc->fd = -1;
	oc->own_fd = false;
	buf_free(&oc->pending);
	oc->sent = 0;
}
