/* http.c: the fake platform's HTTP side: libmicrohttpd callbacks, request bodies, building and sending answers. */
#include <config.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include "fake.h"

void reply_init(struct reply *rp)
{
	*rp = (struct reply){
		.status = 500, .retry_after = -1,
		.stream = { .end_after_events = -1, .end_after_ms = -1 },
	};
}

/* What an answer still owns once it is sent (or was never sent). */
void reply_free(struct reply *rp)
{
	free(rp->body);
	free(rp->location);
	free(rp->content_type);
	free(rp->disposition);
	if (rp->events)
		events_free(rp->events);
	reply_init(rp);
}

void reply_json(struct reply *rp, unsigned status, jv v)
{
	free(rp->body);
	rp->status = status;
	rp->body = json_dump(v, &rp->len);
}

void reply_error(struct reply *rp, unsigned status, const char *message)
{
	reply_json(rp, status, jv_object_set(jv_object(), jv_string("error"), jv_string(message)));
}

void reply_raw(struct reply *rp, unsigned status, const char *body, size_t len)
{
	free(rp->body);
	rp->status = status;
	rp->body = bytes_dup(body, len);
	rp->len = len;
}

void reply_status(struct reply *rp, const char *status)
{
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("status"), jv_string(status)));
}

void reply_rows(struct reply *rp, struct row **rows, long from, long end, int step)
{
	struct buf b = { 0 };

	buf_append(&b, "[", 1);
	for (long i = from; i != end; i += step) {
		if (i != from)
			buf_append(&b, ",", 1);
		buf_append(&b, rows[i]->json, rows[i]->json_len);
	}
	buf_append(&b, "]", 1);
	free(rp->body);
	rp->status = 200;
	rp->body = b.p;
	rp->len = b.len;
}

const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

const char *query(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	jv *obj = cls;
	char *name = xstrdup(key);
	for (char *p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	*obj = jv_object_set(*obj, jv_string(name), jv_string(value ? value : ""));
	free(name);
	return MHD_YES;
}

jv request_headers(struct MHD_Connection *c)
{
	jv headers = jv_object();
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, &headers);
	return headers;
}

void reply_ok(struct reply *rp)
{
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ok"), jv_true()));
}

void sleep_ms(unsigned ms)
{
	/* In slices, so that a shutdown does not wait for a long injected delay. */
	while (ms > 0 && !atomic_load(&stopping)) {
		unsigned slice = ms < 10 ? ms : 10;
		struct timespec ts = { 0, (long)slice * 1000000L };
		nanosleep(&ts, NULL);
		ms -= slice;
	}
}

/*
 * A body sent through a callback: a made-up one (never allocated whole, so an answer
 * can be far larger than the fake's memory), or one dribbled out a byte at a time.
 * Each connection has its own thread, so sleeping here stalls only this answer.
 */
struct stream {
	char *body;                     /* NULL: made up, see stream_byte */
	uint64_t len;
	bool pattern;
	unsigned dribble_ms;
};

/*
 * Byte pos of a made-up body of len bytes: ["aaa...a"], a JSON array of one string,
 * or for file content the alphabet over and over ("abc...zabc...").
 */
static char stream_byte(uint64_t pos, uint64_t len, bool pattern)
{
	if (pattern)
		return (char)('a' + pos % 26);
	return pos == 0 ? '[' : pos == 1 || pos == len - 2 ? '"' : pos == len - 1 ? ']' : 'a';
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct stream *st = cls;

	if (pos >= st->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (st->dribble_ms) {
		sleep_ms(st->dribble_ms);
		max = 1;
	}
	if (atomic_load(&stopping))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	size_t n = st->len - pos < max ? (size_t)(st->len - pos) : max;
	if (st->body) {
		memcpy(out, st->body + pos, n);
	} else {
		for (size_t i = 0; i < n; i++)
			out[i] = stream_byte(pos + i, st->len, st->pattern);
	}
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *st = cls;
	free(st->body);
	free(st);
}

/* The response object for rp's body, whichever kind it is; NULL when out of memory. */
static struct MHD_Response *response_for(struct reply *rp)
{
	struct MHD_Response *resp;

	if (rp->events) {
		/* An event stream never ends on its own; its reader blocks for events. */
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, events_read,
							 rp->events, events_free);
		if (resp)
			rp->events = NULL;
		return resp;
	}
	if (rp->generated || (rp->dribble_ms && rp->body && rp->len > 0)) {
		struct stream *st = xmalloc(sizeof *st);
		*st = (struct stream){ .body = rp->generated ? NULL : rp->body,
				       .len = rp->generated ? rp->generated : rp->len,
				       .pattern = rp->pattern, .dribble_ms = rp->dribble_ms };
		if (rp->generated)
			free(rp->body);
		rp->body = NULL;
		resp = MHD_create_response_from_callback(rp->chunked ? MHD_SIZE_UNKNOWN : st->len,
							 rp->dribble_ms ? 1 : 64 * 1024,
							 stream_read, st, stream_free);
		if (!resp)
			stream_free(st);
		return resp;
	}
	if (rp->body) {
		resp = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE);
		if (resp)
			rp->body = NULL;
		return resp;
	}
	return MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
}

static void add_number_header(struct MHD_Response *resp, const char *name, long n)
{
	char num[32];
	snprintf(num, sizeof num, "%ld", n);
	MHD_add_response_header(resp, name, num);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct reply *rp,
				  const struct rate_headers *rh)
{
	struct MHD_Response *resp = response_for(rp);
	if (!resp) {
		reply_free(rp);
		return MHD_NO;
	}
	if (!rp->bare)
		MHD_add_response_header(resp, "Content-Type",
					rp->content_type ? rp->content_type : "application/json");
	if (rp->disposition)
		MHD_add_response_header(resp, "Content-Disposition", rp->disposition);
	if (rp->location)
		MHD_add_response_header(resp, "Location", rp->location);
	if (rp->retry_after >= 0)
		add_number_header(resp, "Retry-After", rp->retry_after);
	if (rh->unlimited)
		MHD_add_response_header(resp, "X-RateLimit-Limit", "unlimited");
	if (rh->present) {
		add_number_header(resp, "X-RateLimit-Limit", rh->limit);
		add_number_header(resp, "X-RateLimit-Remaining", rh->remaining);
		add_number_header(resp, "X-RateLimit-Reset", rh->reset);
	}
	enum MHD_Result ret = MHD_queue_response(c, rp->status, resp);
	MHD_destroy_response(resp);
	reply_free(rp);
	return ret;
}

/* Turns the close that follows MHD_NO into a TCP reset, so the client sees no answer at all. */
static void reset_connection(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	if (info)
		setsockopt(info->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Called on the first access-handler call of a request, once its headers are in. */
static struct request *request_start(struct MHD_Connection *c, const char *method,
				     const char *url)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct request *rq = xmalloc(sizeof *rq);

	*rq = (struct request){ .conn = info ? info->socket_context : NULL };
	rq->uri = xstrdup(rq->conn && rq->conn->uri ? rq->conn->uri : url);
	rq->t_ms = wall_ns() / 1000000;
	/* /a2a takes far larger bodies than the rest (and answers 413 beyond them). */
	size_t len = strlen(url);
	rq->body_cap = strcmp(method, "POST") == 0 && strncmp(url, "/workspaces/", 12) == 0 &&
		       len > 4 && strcmp(url + len - 4, "/a2a") == 0 ? A2A_BODY_CAP : BODY_CAP;
	if (strncmp(url, "/_control", 9) == 0 && (url[9] == '/' || url[9] == '\0'))
		return rq;

	pthread_mutex_lock(&state_lock);
	rq->seq = requests_log(method, rq->uri, rq->t_ms);
	pthread_mutex_unlock(&state_lock);
	return rq;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	struct request *rq = *req_cls;

	if (!rq) {
		*req_cls = request_start(c, method, url);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		/* Keep at most the cap (and one byte to know it was passed); drop the rest. */
		size_t room = rq->body_cap + 1 - rq->body_len, take = *upload_data_size;
		if (take > room)
			take = room;
		if (take > 0) {
			rq->body = xrealloc(rq->body, rq->body_len + take + 1);
			memcpy(rq->body + rq->body_len, upload_data, take);
			rq->body_len += take;
			rq->body[rq->body_len] = '\0';
		}
		if (rq->body_len > rq->body_cap) {
			rq->body_too_big = true;
			rq->body_len = rq->body_cap;
			rq->body[rq->body_cap] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	struct reply rp;
	struct rate_headers rh = { 0 };
	reply_init(&rp);
	if (rq->seq == 0) {
		pthread_mutex_lock(&state_lock);
		control_handle(c, method, url, rq, &rp);
		pthread_mutex_unlock(&state_lock);
		rq->shutdown = rp.shutdown;
	} else {
		api_handle(c, method, url, rq, &rp, &rh);
	}
	if (rp.hold_ms)
		sleep_ms(rp.hold_ms);
	if (rp.reset) {
		reply_free(&rp);
		reset_connection(c);
		return MHD_NO;
	}
	return send_reply(c, &rp, &rh);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *req_cls;
	if (!rq)
		return;
	if (rq->shutdown)
		kill(getpid(), SIGTERM);
	free(rq->uri);
	free(rq->body);
	free(rq);
	*req_cls = NULL;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *cn = info ? info->socket_context : NULL;
	if (cn) {
		free(cn->uri);
		cn->uri = xstrdup(uri);
	}
	return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct conn *cn = xmalloc(sizeof *cn);
		const union MHD_ConnectionInfo *fd =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *addr =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		int one = 1;

		*cn = (struct conn){ .ip = "?" };
		if (fd)
			setsockopt(fd->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (addr && addr->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)addr->client_addr)->sin_addr,
				  cn->ip, sizeof cn->ip);
		else if (addr && addr->client_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6,
				  &((struct sockaddr_in6 *)(void *)addr->client_addr)->sin6_addr,
				  cn->ip, sizeof cn->ip);
		*socket_context = cn;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		struct conn *cn = *socket_context;
		if (cn) {
			free(cn->uri);
			free(cn);
		}
		*socket_context = NULL;
	}
}


/* Listens on 127.0.0.1:port (0: a port the kernel picks), a thread per connection. */
struct MHD_Daemon *http_start(uint16_t port)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port) };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_AUTO | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_END);
}
