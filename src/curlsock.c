/* curlsock.c: libcurl's sockets and timer, for a loop that polls them itself (the multi_socket API). */
#include <config.h>

#include <poll.h>
#include <stdint.h>
#include <stdlib.h>

#include "curlsock.h"
#include "util.h"

/* libcurl says which sockets to wait on, and for what. */
static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct curlsock *cs = userp;
	(void)e;
	(void)socketp;
	size_t i = 0;
	while (i < cs->n && cs->fds[i].fd != fd)
		i++;
	if (what == CURL_POLL_REMOVE) {
		if (i < cs->n)
			cs->fds[i] = cs->fds[--cs->n];
		return 0;
	}
	if (i == cs->n) {
		if (cs->n == cs->cap) {
			cs->cap = cs->cap ? cs->cap * 2 : 8;
			cs->fds = xrealloc(cs->fds, cs->cap * sizeof *cs->fds);
		}
		cs->fds[cs->n++] = (struct curlsock_fd){ .fd = fd };
	}
	cs->fds[i].what = what;
	return 0;
}

/* ... and when to call it back whatever the sockets do. */
static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
	struct curlsock *cs = userp;
	(void)m;
	cs->due = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	return 0;
}

void curlsock_init(struct curlsock *cs, CURLM *multi)
{
	*cs = (struct curlsock){ .multi = multi, .due = -1 };
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, cs);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(multi, CURLMOPT_TIMERDATA, cs);
}

void curlsock_free(struct curlsock *cs)
{
	free(cs->fds);
	cs->fds = NULL;
	cs->n = cs->cap = 0;
}

void curlsock_watch(const struct curlsock *cs, curlsock_add_fn add, void *ctx)
{
	for (size_t i = 0; i < cs->n; i++) {
		short events = (short)((cs->fds[i].what & CURL_POLL_IN ? POLLIN : 0) |
				       (cs->fds[i].what & CURL_POLL_OUT ? POLLOUT : 0));
		if (events)
			add(ctx, cs->fds[i].fd, events);
	}
}

void curlsock_ready(struct curlsock *cs, int fd, short revents)
{
	for (size_t i = 0; i < cs->n; i++)
		if (cs->fds[i].fd == fd)
			cs->fds[i].revents |= revents;
}

struct pollfds {
	struct pollfd *fds;
	size_t n;
};

static void add_pollfd(void *ctx, int fd, short events)
{
	struct pollfds *p = ctx;
	p->fds[p->n++] = (struct pollfd){ .fd = fd, .events = events };
}

int curlsock_wait(struct curlsock *cs, int64_t timeout_ms)
{
	struct pollfds p = { .fds = xcalloc(cs->n ? cs->n : 1, sizeof *p.fds) };
	curlsock_watch(cs, add_pollfd, &p);
	int ready = poll(p.fds, p.n, (int)(timeout_ms > INT32_MAX ? INT32_MAX : timeout_ms));
	for (size_t i = 0; ready > 0 && i < p.n; i++)
		if (p.fds[i].revents)
			curlsock_ready(cs, p.fds[i].fd, p.fds[i].revents);
	free(p.fds);
	return ready;
}

void curlsock_drive(struct curlsock *cs)
{
	int running = 0;
	/* Each socket's news once; the list changes under libcurl's callbacks. */
	for (size_t i = 0; i < cs->n;) {
		struct curlsock_fd *s = &cs->fds[i];
		if (!s->revents) {
			i++;
			continue;
		}
		int mask = (s->revents & (POLLIN | POLLHUP) ? CURL_CSELECT_IN : 0) |
			   (s->revents & POLLOUT ? CURL_CSELECT_OUT : 0) |
			   (s->revents & (POLLERR | POLLNVAL) ? CURL_CSELECT_ERR : 0);
		curl_socket_t fd = s->fd;
		s->revents = 0;
		curl_multi_socket_action(cs->multi, fd, mask, &running);
		i = 0;
	}
	if (cs->due >= 0 && now_ms() >= cs->due) {
		cs->due = -1;
		curl_multi_socket_action(cs->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}
