/* http.h: libcurl multi plumbing: requests and streams, retries, Retry-After, rate-limit headers, bounded answers. */
/* Retries back off with jitter; a 429 pauses every request of the client. */
#ifndef MC_HTTP_H
#define MC_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <curl/curl.h>

struct http;

struct http_resp {
	long status;          /* 0: no answer (network error, timeout, too large) */
	const char *body;     /* NUL-terminated, may be empty */
	size_t len;
	const char *error;    /* what went wrong when status == 0; for a 3xx, where it pointed (not followed) */
	bool too_large;       /* the answer was refused for its size (status 0) */
	bool stale_token;     /* sent with a token that has been replaced since */
	int attempts;
};

typedef void (*http_done_fn)(void *ctx, const struct http_resp *r);
/* A streaming request's answer, as it comes: the bytes of a 2xx body. It must
 * not cancel its own request (libcurl is inside a callback): flag it instead. */
typedef void (*http_data_fn)(void *ctx, const char *data, size_t len);
/* An attempt failed and another is scheduled (the request must not be
 * cancelled from here). */
typedef void (*http_failed_fn)(void *ctx, const struct http_resp *r);
/* Takes the bytes of a 2xx answer as they come (ctx is the request's); false
 * aborts the transfer. */
typedef bool (*http_sink_fn)(void *ctx, const char *data, size_t n);
/* Decides whether an answer is worth another attempt. NULL: http_transient. */
typedef bool (*http_retry_fn)(const struct http_resp *r);

struct http_opts {
	const char *method;       /* "GET" or "POST" */
	const char *path;         /* appended to the API URL; caller keeps it valid only for the call */
	const char *body;         /* POST body (copied), NULL for none */
	size_t body_len;
	bool as_workspace;        /* adds X-Workspace-ID: <own id> */
	int max_attempts;         /* 0: until it succeeds or is cancelled */
	http_retry_fn retry;      /* NULL: network errors, 408, 429, 5xx */
	long timeout_ms;          /* for one attempt; 0: HTTP_TIMEOUT_MS */
	http_failed_fn failed;    /* NULL: nobody is told of attempts that failed */
	http_sink_fn sink;        /* NULL: the answer is buffered (below 64 MiB); else a 2xx body goes
	                           * here, any size, without the 60 s transfer limit (the slow-transfer
	                           * cut still applies), and only other answers are buffered */
	http_done_fn done;
	void *ctx;
	/* Non-NULL: a streaming request. A 2xx body goes to stream() instead of
	 * being kept, and the transfer may last for ever: no overall timeout and no
	 * speed limit (silence is normal on an event stream); TCP keepalive probes
	 * find a peer that went away. done() comes when it ends. */
	http_data_fn stream;
};

/* What the platform said of its rate limit in the headers of one answer. */
struct http_rate {
	long status;              /* of that answer */
	bool unlimited;           /* X-RateLimit-Limit: unlimited (no other rate header then) */
	long limit;               /* X-RateLimit-Limit, -1 when absent or not a number */
	long remaining;           /* X-RateLimit-Remaining, -1 when absent */
	long reset_s;             /* X-RateLimit-Reset: whole seconds to the window's end, -1 when absent */
};
typedef void (*http_rate_fn)(void *ctx, const struct http_rate *rate);
#define HTTP_TIMEOUT_MS 60000L

struct http *http_new(const char *api_url, const char *workspace_id, const char *org_id);
void http_free(struct http *h);
/* The bearer token used from now on (copied; NULL removes the header), also by
 * the next attempt of a request already started. */
void http_set_token(struct http *h, const char *token);
/* fn gets the rate-limit headers of every answer that has any, once its headers are in. */
void http_on_rate(struct http *h, http_rate_fn fn, void *ctx);

/* Sees every answer, of every request, before its retry rule does. Returning
 * true parks the request: it is neither retried nor finished (its done is never
 * called) until it is cancelled or the client freed. For answers that concern the
 * whole client rather than one request (an org id the platform refuses). */
typedef bool (*http_answer_hook_fn)(void *ctx, const char *method, const char *path, const struct http_resp *r);
void http_set_answer_hook(struct http *h, http_answer_hook_fn fn, void *ctx);

/* Queues a request; returns a handle valid until done is called or it is cancelled. */
struct http_req *http_start(struct http *h, const struct http_opts *o);
void http_cancel(struct http *h, struct http_req *r);

bool http_transient(const struct http_resp *r);
/* Milliseconds until the next retry is due (-1: none waiting). */
int64_t http_next_due(struct http *h, int64_t now);
/* Starts due requests, tells libcurl what became ready and what timed out,
 * calls done callbacks. */
void http_process(struct http *h, int64_t now);
/* The sockets to wait on, each given to add() with its poll(2) events... */
typedef void (*http_watch_fn)(void *ctx, int fd, short events);  /* as curlsock_add_fn */
void http_watch(struct http *h, http_watch_fn add, void *ctx);
/* ... and what poll(2) said of one (other descriptors are ignored). */
void http_ready(struct http *h, int fd, short revents);
/* Or, for a caller with nothing else to wait on: up to timeout_ms for any of
 * them. Returns poll(2)'s result. */
int http_wait(struct http *h, int64_t timeout_ms);
/* Requests being transferred right now (not those waiting to retry). */
int http_active(const struct http *h);
/* How many requests have finished so far (a change means callbacks ran). */
unsigned long http_completed(struct http *h);

#endif
