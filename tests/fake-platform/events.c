/* events.c: the server-sent event stream of a workspace: subscribers, their 64-event buffers, and what each stream sends. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "fake.h"

/*
 * One open stream. Events wait in a ring of EVENTS_BUFFERED; when it is full a new
 * event is dropped, as the platform's broadcaster drops for a slow subscriber.
 */
struct subscriber {
	struct subscriber *next;
	char *ws_id;
	char *ring[EVENTS_BUFFERED];
	size_t head, count;
	size_t sent, dropped;
	struct stream_opts opts;
	int64_t end_at_ms;              /* monotonic; -1: never */
	int fd;                         /* the client's socket, to notice it went away */
	bool ping_sent;
	struct buf out;                 /* bytes on their way to the client */
	size_t out_sent;
};

static struct subscriber *subscribers;

struct subscriber *events_subscribe(const struct workspace *w, const struct stream_opts *opts,
				    int fd)
{
	struct subscriber *s = xcalloc(1, sizeof *s);
	s->ws_id = xstrdup(w->id);
	s->opts = *opts;
	s->end_at_ms = opts->end_after_ms >= 0 ? now_ms() + opts->end_after_ms : -1;
	s->fd = fd;
	/* At the tail, so that the list (and the control API's report) is oldest first. */
	struct subscriber **tail = &subscribers;
	while (*tail)
		tail = &(*tail)->next;
	*tail = s;
	return s;
}

/* MHD's free callback of the stream's response (and the cleanup of one never sent). */
void events_free(void *cls)
{
	struct subscriber *s = cls;

	pthread_mutex_lock(&state_lock);
	for (struct subscriber **p = &subscribers; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			break;
		}
	pthread_mutex_unlock(&state_lock);
	for (size_t i = 0; i < s->count; i++)
		free(s->ring[(s->head + i) % EVENTS_BUFFERED]);
	buf_free(&s->out);
	free(s->ws_id);
	free(s);
}

size_t events_streams(const char *ws_id)
{
	size_t n = 0;
	for (const struct subscriber *s = subscribers; s; s = s->next)
		n += strcmp(s->ws_id, ws_id) == 0;
	return n;
}

jv events_report(const char *ws_id)
{
	jv out = jv_array();
	for (const struct subscriber *s = subscribers; s; s = s->next) {
		if (strcmp(s->ws_id, ws_id) != 0)
			continue;
		jv o = jv_object_set(jv_object(), jv_string("sent"), jv_number((double)s->sent));
		o = jv_object_set(o, jv_string("dropped"), jv_number((double)s->dropped));
		o = jv_object_set(o, jv_string("buffered"), jv_number((double)s->count));
		o = jv_object_set(o, jv_string("other_replica"), jv_bool(s->opts.other_replica));
		out = jv_array_append(out, o);
	}
	return out;
}

/* The data line of ACTIVITY_LOGGED for a row: what the row says, but no id and no seq. */
static char *activity_event(const struct workspace *w, const struct row *r, const char *method,
			    jv request_body)
{
	jv data = jv_object_set(jv_object(), jv_string("activity_type"), jv_string("a2a_receive"));
	data = jv_object_set(data, jv_string("method"), jv_string(method));
	data = jv_object_set(data, jv_string("summary"), jv_null());
	data = jv_object_set(data, jv_string("status"), jv_string("ok"));
	data = jv_object_set(data, jv_string("source_id"), jv_str_or_null(r->source_id));
	data = jv_object_set(data, jv_string("target_id"), jv_string(w->id));
	data = jv_object_set(data, jv_string("duration_ms"), jv_null());
	if (jv_get_kind(request_body) != JV_KIND_NULL)
		data = jv_object_set(data, jv_string("request_body"), jv_copy(request_body));
	jv ev = jv_object_set(jv_object(), jv_string("type"), jv_string("ACTIVITY_LOGGED"));
	ev = jv_object_set(ev, jv_string("timestamp"), jv_number((double)(wall_ns() / 1000000)));
	ev = jv_object_set(ev, jv_string("data"), data);
	return json_dump(ev, NULL);
}

void events_row_logged(const struct workspace *w, const struct row *r, const char *method,
		       jv request_body)
{
	/* The workspace's own replies echoed and its delegation results wake nobody. */
	if (strcmp(method, "notify") == 0 || strcmp(method, "delegate_result") == 0)
		return;
	char *ev = NULL;
	for (struct subscriber *s = subscribers; s; s = s->next) {
		if (strcmp(s->ws_id, w->id) != 0 || s->opts.other_replica)
			continue;
		if ((s->opts.drop_ratio > 0 && random_unit() < s->opts.drop_ratio) ||
		    s->count == EVENTS_BUFFERED) {
			s->dropped++;
			continue;
		}
		if (!ev)
			ev = activity_event(w, r, method, request_body);
		s->ring[(s->head + s->count++) % EVENTS_BUFFERED] = xstrdup(ev);
	}
	if (ev) {
		free(ev);
		pthread_cond_broadcast(&state_changed);
	}
}

/* The client closed its end (or the socket broke). */
static bool client_gone(int fd)
{
	char c;
	ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Waits on state_changed until something may have happened, at most 100 ms. */
static void wait_a_little(const struct subscriber *s)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	long wait_ms = 100;
	if (s->end_at_ms >= 0 && s->end_at_ms - now_ms() < wait_ms)
		wait_ms = s->end_at_ms - now_ms() > 0 ? (long)(s->end_at_ms - now_ms()) : 0;
	long ns = until.tv_nsec + wait_ms * 1000000L;
	until.tv_sec += ns / 1000000000L;
	until.tv_nsec = ns % 1000000000L;
	pthread_cond_timedwait(&state_changed, &state_lock, &until);
}

/*
 * MHD's content reader: a ": ping" comment first, then one "data:" line per event. It
 * blocks while there is nothing to send, which is fine with a thread per connection
 * (returning 0 would make MHD spin); it wakes on every event and every 100 ms to see
 * whether the stream should end or the client left.
 */
ssize_t events_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct subscriber *s = cls;
	(void)pos;

	pthread_mutex_lock(&state_lock);
	for (;;) {
		if (s->out.len > s->out_sent) {
			size_t n = s->out.len - s->out_sent < max ? s->out.len - s->out_sent : max;
			memcpy(out, s->out.p + s->out_sent, n);
			s->out_sent += n;
			if (s->out_sent == s->out.len) {
				s->out.len = 0;
				s->out_sent = 0;
			}
			pthread_mutex_unlock(&state_lock);
			return (ssize_t)n;
		}
		if (atomic_load(&stopping))
			break;
		if (!s->ping_sent) {
			buf_append(&s->out, ": ping\n\n", 8);
			s->ping_sent = true;
			continue;
		}
		if ((s->opts.end_after_events >= 0 && s->sent >= (size_t)s->opts.end_after_events) ||
		    (s->end_at_ms >= 0 && now_ms() >= s->end_at_ms)) {
			pthread_mutex_unlock(&state_lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (s->count > 0) {
			char *ev = s->ring[s->head];
			s->head = (s->head + 1) % EVENTS_BUFFERED;
			s->count--;
			buf_append(&s->out, "data: ", 6);
			buf_append(&s->out, ev, strlen(ev));
			buf_append(&s->out, "\n\n", 2);
			free(ev);
			s->sent++;
			continue;
		}
		if (client_gone(s->fd))
			break;
		wait_a_little(s);
	}
	pthread_mutex_unlock(&state_lock);
	return MHD_CONTENT_READER_END_WITH_ERROR;
}
