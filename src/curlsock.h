/* curlsock.h: libcurl's sockets and timer, for a loop that polls them itself (the multi_socket API). */
#ifndef MC_CURLSOCK_H
#define MC_CURLSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

/* What libcurl waits on, as its callbacks tell it: each socket with what it
 * waits for and what poll(2) has said of it since, and when its timer expires.
 * libcurl is then told only of the sockets that are ready, so a transfer with
 * nothing to do (a silent event stream) costs nothing. */
struct curlsock {
	CURLM *multi;
	struct curlsock_fd {
		curl_socket_t fd;
		int what;             /* CURL_POLL_IN, _OUT or _INOUT */
		short revents;        /* poll(2)'s news, not yet passed on */
	} *fds;
	size_t n, cap;
	int64_t due;              /* when the timer expires (now_ms() terms; -1: none) */
};

/* Installs the socket and timer callbacks on multi. */
void curlsock_init(struct curlsock *cs, CURLM *multi);
void curlsock_free(struct curlsock *cs);

typedef void (*curlsock_add_fn)(void *ctx, int fd, short events);
/* Each socket to wait on, given to add() with its poll(2) events. */
void curlsock_watch(const struct curlsock *cs, curlsock_add_fn add, void *ctx);
/* What poll(2) said of fd (another descriptor is ignored). */
void curlsock_ready(struct curlsock *cs, int fd, short revents);
/* Waits up to timeout_ms for any of the sockets; poll(2)'s result. */
int curlsock_wait(struct curlsock *cs, int64_t timeout_ms);
/* Tells libcurl what became ready and whether its timer expired. */
void curlsock_drive(struct curlsock *cs);

#endif
