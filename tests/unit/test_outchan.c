/* test_outchan.c: unit tests for the non-blocking output channel. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"
#include "outchan.h"
#include "util.h"

static bool fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

/* Reads what fd has now into b (fd non-blocking), until EAGAIN or EOF. */
static void read_some(int fd, struct buf *b)
{
	char tmp[65536];
	ssize_t n;
	while ((n = read(fd, tmp, sizeof tmp)) > 0)
		buf_append(b, tmp, (size_t)n);
}

/* Queues count lines of about 100 bytes each; returns what was queued. */
static char *queue_lines(struct outchan *oc, int count)
{
	struct buf all = {0};
	char line[128];
	for (int i = 0; i < count; i++) {
		int n = snprintf(line, sizeof line, "{\"n\":%06d,\"pad\":\"%080d\"}", i, 0);
		outchan_queue(oc, line, (size_t)n);
		buf_append(&all, line, (size_t)n);
		buf_append(&all, "\n", 1);
	}
	return all.p;
}

/* Writes into a full pipe or socket without blocking, then lets the reader
 * drain it and checks everything arrived in order. */
static void fill_then_drain(struct outchan *oc, int reader, const char *what)
{
	char *want = queue_lines(oc, 20000); /* 2 MB: more than any pipe or socket buffer */
	size_t total = strlen(want);
	size_t left = outchan_flush(oc);
	ok(left > 0 && left < total, "%s: a full reader leaves %zu of %zu bytes pending, without blocking",
		what, left, total);
	ok(outchan_want_write(oc), "%s: wants to write", what);
	ok(!oc->broken, "%s: not broken", what);

	fcntl(reader, F_SETFL, fcntl(reader, F_GETFL) | O_NONBLOCK);
	struct buf got = {0};
	for (int rounds = 0; rounds < 100000 && (outchan_flush(oc) > 0 || got.len < total); rounds++)
		read_some(reader, &got);
	read_some(reader, &got);
	char name[80];
	snprintf(name, sizeof name, "%s: flush completes once the reader drains", what);
	is_int((long long)oc->pending.len, 0, name);
	ok(got.len == total && memcmp(got.p, want, total) == 0, "%s: every byte arrived, in order (%zu of %zu)",
		what, got.len, total);
	ok(!outchan_want_write(oc), "%s: nothing more to write", what);
	buf_free(&got);
	free(want);
}

static void test_outchan(void)
{
	struct outchan oc;
	int p[2];

	/* An inherited (blocking) pipe: reopened privately, non-blocking. */
	if (pipe(p) != 0)
		abort();
	outchan_init(&oc, p[1]);
	ok(oc.own_fd && oc.nonblock && oc.fd != p[1], "a blocking pipe is reopened through /proc");
	ok(!(fcntl(p[1], F_GETFL) & O_NONBLOCK), "the inherited descriptor stays blocking");
	ok(fcntl(oc.fd, F_GETFL) & O_NONBLOCK, "the private one is non-blocking");
	ok(fcntl(oc.fd, F_GETFD) & FD_CLOEXEC, "the private one is close-on-exec");
	fill_then_drain(&oc, p[0], "pipe");
	int own = oc.fd;
	outchan_close(&oc);
	ok(!fd_open(own) && fd_open(p[1]), "close closes the private descriptor, not the inherited one");
	close(p[0]);
	close(p[1]);

	/* The reader goes away. */
	if (pipe(p) != 0)
		abort();
	outchan_init(&oc, p[1]);
	close(p[0]);
	outchan_queue(&oc, "lost", 4);
	size_t left = outchan_flush(&oc);
	ok(oc.broken && oc.error == EPIPE, "a closed pipe sets broken with EPIPE");
	is_int((long long)left, 5, "what could not be written stays counted");
	ok(!outchan_want_write(&oc), "a broken channel does not want to write");
	outchan_queue(&oc, "more", 4);
	is_int((long long)oc.pending.len, 5, "lines queued after it broke are dropped");
	outchan_close(&oc);
	close(p[1]);

	/* The reader was gone before we started: whether or not the reopen
	 * through /proc succeeds, the first write finds out. */
	if (pipe(p) != 0)
		abort();
	close(p[0]);
	outchan_init(&oc, p[1]);
	outchan_queue(&oc, "x", 1);
	outchan_flush(&oc);
	ok(oc.broken && oc.error == EPIPE, "a pipe without a reader at start: broken on first write");
	outchan_close(&oc);
	ok(fd_open(p[1]), "and the inherited descriptor is left open");
	close(p[1]);

	/* A pipe we made ourselves (a co-process's stdin) is used as it is. */
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
		abort();
	outchan_init(&oc, p[1]);
	ok(!oc.own_fd && oc.nonblock && oc.fd == p[1], "an O_NONBLOCK pipe is used directly");
	fill_then_drain(&oc, p[0], "own pipe");
	outchan_close(&oc);
	ok(fd_open(p[1]), "and not closed by outchan_close");
	close(p[0]);
	close(p[1]);

	/* A socket: send with MSG_DONTWAIT, the descriptor's flags untouched. */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) != 0)
		abort();
	outchan_init(&oc, p[0]);
	ok(oc.is_socket && oc.nonblock && !oc.own_fd, "a socket is written with send");
	ok(!(fcntl(p[0], F_GETFL) & O_NONBLOCK), "the socket stays blocking");
	fill_then_drain(&oc, p[1], "socket");
	close(p[1]);
	outchan_queue(&oc, "x", 1);
	outchan_flush(&oc);
	ok(oc.broken && oc.error == EPIPE, "a socket whose peer closed is broken");
	outchan_close(&oc);
	close(p[0]);

	/* A regular file is written whole. */
	char path[] = "/tmp/test_outchan.XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		abort();
	unlink(path);
	outchan_init(&oc, fd);
	ok(oc.regular && !oc.nonblock && !oc.own_fd, "a regular file is written plainly");
	char *want = queue_lines(&oc, 500);
	is_int((long long)outchan_flush(&oc), 0, "a regular file takes everything in one flush");
	struct buf got = {0};
	lseek(fd, 0, SEEK_SET);
	read_some(fd, &got);
	ok(got.len == strlen(want) && memcmp(got.p, want, got.len) == 0, "the file holds every line");
	buf_free(&got);
	free(want);
	outchan_close(&oc);
	ok(fd_open(fd), "the file descriptor is left open");
	close(fd);

	/* Anything else (a terminal; here /dev/null) gets PIPE_BUF per flush. */
	fd = open("/dev/null", O_WRONLY);
	outchan_init(&oc, fd);
	want = queue_lines(&oc, 100);
	size_t total = strlen(want);
	free(want);
	ok(!oc.nonblock && !oc.regular, "a character device is written plainly");
	is_int((long long)outchan_flush(&oc), (long long)(total - PIPE_BUF), "one flush writes PIPE_BUF bytes");
	while (outchan_flush(&oc) > 0)
		;
	is_int((long long)oc.pending.len, 0, "repeated flushes write the rest");
	outchan_close(&oc);
	close(fd);

	outchan_init(&oc, -1);
	outchan_queue(&oc, "x", 1);
	ok(oc.broken && oc.error == EBADF && !outchan_want_write(&oc), "a bad descriptor is broken from the start");
	outchan_close(&oc);
}

int main(void)
{
	/* As in the program: a gone reader shows as EPIPE, not as a signal. And
	 * a blocking write would hang the test: fail it instead. */
	signal(SIGPIPE, SIG_IGN);
	alarm(60);
	test_outchan();
	return done_testing();
}
