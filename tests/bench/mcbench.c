/* mcbench: the benchmark's own tools: a load client for the fake platform's ceiling,
 * message queueing, a drain waiter that samples the bridge, and two handlers. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jv.h>

static const char usage_text[] =
	"usage: mcbench ceiling --url U --ws ID --token T --peer ID --count N [--page K] [--text-size S]\n"
	"       mcbench queue   --url U --ws ID --peers ID,ID.. --count N [--text-size S] [--chunk C]\n"
	"       mcbench trickle --url U --ws ID[,ID..] --peer ID --count N [--min-gap-ms A] [--max-gap-ms B]\n"
	"       mcbench wait    --url U --peers ID,ID.. --target N --pid P [--fake-pid F] [--timeout S]\n"
	"       mcbench echo            (handler: {id,text} -> {id,text:\"echo: \"+text})\n"
	"       mcbench stamp LOGFILE   (the same, logging arrival and reply times)\n"
	"       mcbench floor   --url U (loads what the bridge loads, makes one request, waits)\n";

/* ---------- small utilities ---------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("mcbench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? b->cap * 2 : 4096;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static char *dump(jv v)
{
	jv s = jv_dump_string(v, 0);
	char *out = strdup(jv_string_value(s));
	jv_free(s);
	if (!out)
		die("out of memory");
	return out;
}

/* The text of each queued message: "message {n}" ({n} is its index), or size bytes. */
static char *make_text(long size)
{
	if (size <= 0)
		return strdup("message {n}");
	char *t = malloc((size_t)size + 1);
	if (!t)
		die("out of memory");
	memset(t, 'x', (size_t)size);
	t[size] = '\0';
	return t;
}

/* Writes a random (version 4) UUID over the 36 bytes at out (no NUL). */
static void new_uuid(char *out)
{
	unsigned char r[16];
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
		die("getrandom failed");
	r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
	r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
	static const char hex[] = "0123456789abcdef";
	for (int i = 0, o = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[r[i] >> 4];
		out[o++] = hex[r[i] & 15];
	}
}

/* ---------- HTTP: one keep-alive easy handle ---------- */

struct client {
	CURL *e;
	char *base;
	struct curl_slist *api_headers;   /* as the bridge sends them */
	struct curl_slist *ctl_headers;
	struct buf answer;
};

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
	buf_add(userp, data, size * n);
	return size * n;
}

static void client_init(struct client *c, const char *base, const char *ws, const char *token)
{
	memset(c, 0, sizeof *c);
	c->e = curl_easy_init();
	if (!c->e)
		die("curl_easy_init failed");
	c->base = strdup(base);
	char line[512];
	struct curl_slist *h = NULL;
	if (token) {
		snprintf(line, sizeof line, "Authorization: Bearer %s", token);
		h = curl_slist_append(h, line);
	}
	if (ws) {
		snprintf(line, sizeof line, "X-Workspace-ID: %s", ws);
		h = curl_slist_append(h, line);
	}
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	c->api_headers = h;
	c->ctl_headers = curl_slist_append(curl_slist_append(NULL, "Content-Type: application/json"), "Expect:");
	curl_easy_setopt(c->e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c->e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->e, CURLOPT_WRITEDATA, &c->answer);
	curl_easy_setopt(c->e, CURLOPT_TIMEOUT, 120L);
}

/* One request; the answer is in c->answer. Returns the HTTP status (0: no answer). */
static long client_do(struct client *c, bool api, const char *method, const char *path,
		      const char *body, size_t len)
{
	char *url = malloc(strlen(c->base) + strlen(path) + 1);
	if (!url)
		die("out of memory");
	strcpy(url, c->base);
	strcat(url, path);
	c->answer.len = 0;
	buf_add(&c->answer, "", 0);
	curl_easy_setopt(c->e, CURLOPT_URL, url);
	curl_easy_setopt(c->e, CURLOPT_HTTPHEADER, api ? c->api_headers : c->ctl_headers);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c->e, CURLOPT_CUSTOMREQUEST, NULL);
		curl_easy_setopt(c->e, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(c->e, CURLOPT_POST, 1L);
		curl_easy_setopt(c->e, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c->e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
		curl_easy_setopt(c->e, CURLOPT_CUSTOMREQUEST, strcmp(method, "POST") ? method : NULL);
	}
	CURLcode cc = curl_easy_perform(c->e);
	free(url);
	if (cc != CURLE_OK) {
		fprintf(stderr, "mcbench: %s %s: %s\n", method, path, curl_easy_strerror(cc));
		return 0;
	}
	long status = 0;
	curl_easy_getinfo(c->e, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* A control call that must succeed; returns the parsed answer. */
static jv ctl(struct client *c, const char *method, const char *path, jv body)
{
	char *text = jv_is_valid(body) ? dump(body) : (jv_free(body), NULL);
	long st = client_do(c, false, method, path, text, text ? strlen(text) : 0);
	free(text);
	if (st < 200 || st > 299)
		die("%s %s: HTTP %ld: %.300s", method, path, st, c->answer.p ? c->answer.p : "");
	jv v = jv_parse_sized(c->answer.p, (int)c->answer.len);
	if (!jv_is_valid(v))
		die("%s %s: answer is not JSON", method, path);
	return v;
}

static void client_free(struct client *c)
{
	curl_easy_cleanup(c->e);
	curl_slist_free_all(c->api_headers);
	curl_slist_free_all(c->ctl_headers);
	free(c->answer.p);
	free(c->base);
}

/* Queues count messages from peer; returns the id of the last one. */
static char *queue(struct client *c, const char *ws, const char *peer, long count, const char *text)
{
	jv spec = jv_object_set(jv_object(), jv_string("workspace_id"), jv_string(ws));
	spec = jv_object_set(spec, jv_string("from"), jv_string(peer));
	spec = jv_object_set(spec, jv_string("count"), jv_number((double)count));
	spec = jv_object_set(spec, jv_string("text"), jv_string(text));
	jv ans = ctl(c, "POST", "/_control/messages", spec);
	jv ids = jv_object_get(ans, jv_string("ids"));
	int n = jv_get_kind(ids) == JV_KIND_ARRAY ? jv_array_length(jv_copy(ids)) : 0;
	if (n != count)
		die("queued %d messages, not %ld", n, count);
	jv last = jv_array_get(ids, n - 1);
	char *id = strdup(jv_string_value(last));
	jv_free(last);
	return id;
}

/* ---------- options ---------- */

struct opts {
	const char *url, *ws, *token, *peer, *peers, *logfile;
	long count, page, text_size, chunk, target, timeout, min_gap, max_gap;
	int pid, fake_pid;
};

static void parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },   { "ws", required_argument, NULL, 'w' },
		{ "token", required_argument, NULL, 't' }, { "peer", required_argument, NULL, 'p' },
		{ "peers", required_argument, NULL, 'P' }, { "count", required_argument, NULL, 'n' },
		{ "page", required_argument, NULL, 'k' },  { "text-size", required_argument, NULL, 's' },
		{ "chunk", required_argument, NULL, 'c' }, { "target", required_argument, NULL, 'T' },
		{ "pid", required_argument, NULL, 'i' },   { "fake-pid", required_argument, NULL, 'f' },
		{ "timeout", required_argument, NULL, 'o' },
		{ "min-gap-ms", required_argument, NULL, 'a' },
		{ "max-gap-ms", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct opts){ .page = 8, .chunk = 0, .timeout = 600, .min_gap = 100, .max_gap = 500 };
	int ch;
	optind = 2;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u': o->url = optarg; break;
		case 'w': o->ws = optarg; break;
		case 't': o->token = optarg; break;
		case 'p': o->peer = optarg; break;
		case 'P': o->peers = optarg; break;
		case 'n': o->count = atol(optarg); break;
		case 'k': o->page = atol(optarg); break;
		case 's': o->text_size = atol(optarg); break;
		case 'c': o->chunk = atol(optarg); break;
		case 'T': o->target = atol(optarg); break;
		case 'i': o->pid = atoi(optarg); break;
		case 'f': o->fake_pid = atoi(optarg); break;
		case 'o': o->timeout = atol(optarg); break;
		case 'a': o->min_gap = atol(optarg); break;
		case 'b': o->max_gap = atol(optarg); break;
		default: fputs(usage_text, stderr); exit(2);
		}
	}
	if (!o->url)
		die("--url is required");
}

/* Splits a comma-separated list in place. */
static int split(char *s, char **out, int max)
{
	int n = 0;
	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
		out[n++] = tok;
	return n;
}

/* ---------- ceiling: the fake platform's capacity for the bridge's request mix ---------- */

/*
 * Row ids of an activity page, in order. The fake platform writes every row as
 * {"id":"<uuid>","seq":N,...; that byte sequence cannot occur inside a JSON string
 * (its quotes would be escaped), so a scan finds exactly the rows without the cost
 * of parsing pages of large messages on the client.
 */
static int page_ids(const char *s, char last[37])
{
	static const char pre[] = "{\"id\":\"", post[] = "\",\"seq\":";
	int n = 0;
	for (const char *p = strstr(s, pre); p; p = strstr(p + 1, pre)) {
		const char *id = p + sizeof pre - 1;
		if (strnlen(id, 36 + sizeof post) < 36 + sizeof post - 1 || strncmp(id + 36, post, sizeof post - 1) != 0)
			continue;
		memcpy(last, id, 36);
		last[36] = '\0';
		n++;
	}
	return n;
}

static int cmd_ceiling(struct opts *o)
{
	if (!o->ws || !o->token || !o->peer || o->count <= 0 || o->page <= 0)
		die("ceiling needs --ws, --token, --peer, --count and --page");
	struct client c;
	client_init(&c, o->url, o->ws, o->token);
	char *text = make_text(o->text_size);
	char *cursor = queue(&c, o->ws, o->peer, 1, "seed");
	for (long left = o->count; left > 0;) {
		long n = left > 100000 ? 100000 : left;
		free(queue(&c, o->ws, o->peer, n, text));
		left -= n;
	}

	/* The reply the bridge would post: an A2A message with the echoed text. */
	jv reply_text = jv_string_concat(jv_string("echo: "), jv_string(text));
	jv part = jv_object_set(jv_object_set(jv_object(), jv_string("kind"), jv_string("text")),
				jv_string("text"), reply_text);
	jv msg = jv_object_set(jv_object(), jv_string("role"), jv_string("agent"));
	msg = jv_object_set(msg, jv_string("messageId"), jv_string("8b0c1c1e-5d4f-4c55-9a57-1f0b1f1d2a01"));
	msg = jv_object_set(msg, jv_string("parts"), jv_array_append(jv_array(), part));
	jv env = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
	env = jv_object_set(env, jv_string("id"), jv_string("0f6b9a44-3a73-4c8e-b7b4-6d4f07b0d9e2"));
	env = jv_object_set(env, jv_string("method"), jv_string("message/send"));
	env = jv_object_set(env, jv_string("params"), jv_object_set(jv_object(), jv_string("message"), msg));
	char *body = dump(env);
	size_t body_len = strlen(body);
	/* The platform drops a second message with the same messageId: each post
	 * gets its own, written over the first one's place in the body. */
	char *msg_id = strstr(body, "8b0c1c1e-5d4f-4c55-9a57-1f0b1f1d2a01");
	if (!msg_id)
		die("the reply body has no messageId");
	char *post_path = malloc(strlen(o->peer) + 32);
	sprintf(post_path, "/workspaces/%s/a2a", o->peer);
	char get_path[256];
	char last[37];

	long posts = 0, gets = 0, failed = 0;
	double t0 = mono_s();
	while (posts < o->count) {
		snprintf(get_path, sizeof get_path,
			 "/workspaces/%s/activity?type=a2a_receive&since_id=%s&limit=%ld", o->ws, cursor,
			 o->page);
		gets++;
		if (client_do(&c, true, "GET", get_path, NULL, 0) != 200)
			die("GET activity failed: %.200s", c.answer.p);
		int n = page_ids(c.answer.p, last);
		if (n == 0)
			die("GET activity: empty page after %ld posts", posts);
		free(cursor);
		cursor = strdup(last);
		for (int i = 0; i < n; i++) {
			new_uuid(msg_id);
			if (client_do(&c, true, "POST", post_path, body, body_len) != 200)
				failed++;
			posts++;
		}
	}
	double secs = mono_s() - t0;
	printf("{\"posts\":%ld,\"gets\":%ld,\"failed\":%ld,\"secs\":%.6f,\"req_per_s\":%.1f,\"msg_per_s\":%.1f}\n",
	       posts, gets, failed, secs, (double)(posts + gets) / secs, (double)posts / secs);
	free(cursor);
	free(body);
	free(post_path);
	free(text);
	client_free(&c);
	return failed ? 1 : 0;
}

/* ---------- queue: a backlog, peers interleaved ---------- */

static int cmd_queue(struct opts *o)
{
	char *peers[256];
	if (!o->ws || !o->peers || o->count <= 0)
		die("queue needs --ws, --peers and --count");
	char *list = strdup(o->peers);
	int np = split(list, peers, 256);
	long chunk = o->chunk > 0 ? o->chunk : np > 1 ? 1 : 100000;
	struct client c;
	client_init(&c, o->url, NULL, NULL);
	char *text = make_text(o->text_size);
	long left = o->count;
	for (int i = 0; left > 0; i = (i + 1) % np) {
		long n = left < chunk ? left : chunk;
		free(queue(&c, o->ws, peers[i], n, text));
		left -= n;
	}
	free(text);
	free(list);
	client_free(&c);
	return 0;
}

/* ---------- trickle: messages one at a time, at random gaps ---------- */

/* --ws may name several workspaces (comma-separated): each message goes to one of
 * them at random. The gaps are kept from one message's start to the next, so that
 * the time a queueing request takes does not slow the rate down. */
static int cmd_trickle(struct opts *o)
{
	if (!o->ws || !o->peer || o->count <= 0 || o->max_gap < o->min_gap)
		die("trickle needs --ws, --peer, --count and min gap <= max gap");
	char *list = strdup(o->ws);
	char *targets[4096];
	int nt = split(list, targets, 4096);
	struct client c;
	client_init(&c, o->url, NULL, NULL);
	unsigned seed;
	if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
		seed = (unsigned)time(NULL);
	srand(seed);
	double next = mono_s();
	for (long i = 1; i <= o->count; i++) {
		char text[64];
		snprintf(text, sizeof text, "lat-%ld", i);
		free(queue(&c, targets[nt > 1 ? rand() % nt : 0], o->peer, 1, text));
		long gap = o->min_gap + (long)((double)rand() / ((double)RAND_MAX + 1) *
					       (double)(o->max_gap - o->min_gap + 1));
		next += (double)gap / 1000;
		double wait = next - mono_s();
		if (wait > 0)
			sleep_ms((long)(wait * 1000));
	}
	client_free(&c);
	free(list);
	return 0;
}

/* ---------- wait: until the replies are in, sampling the bridge ---------- */

struct procstat {
	long rss_kb, hwm_kb, anon_kb, vctx, nvctx;
	double cpu_s;
	bool alive;
};

static long status_field(const char *text, const char *name)
{
	const char *p = strstr(text, name);
	return p ? atol(p + strlen(name)) : -1;
}

static double cpu_of(int pid)
{
	char path[64], text[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	/* Fields after the command name (which may hold spaces): state is field 3,
	 * utime field 14, stime field 15. */
	const char *p = strrchr(text, ')');
	if (!p)
		return -1;
	unsigned long ut = 0, st = 0;
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static struct procstat sample(int pid)
{
	struct procstat s = { .rss_kb = -1, .hwm_kb = -1, .anon_kb = -1, .cpu_s = -1 };
	char path[64], text[4096];
	snprintf(path, sizeof path, "/proc/%d/status", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return s;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return s;
	text[n] = '\0';
	s.alive = true;
	s.rss_kb = status_field(text, "VmRSS:");
	s.hwm_kb = status_field(text, "VmHWM:");
	s.anon_kb = status_field(text, "RssAnon:");
	s.vctx = status_field(text, "\nvoluntary_ctxt_switches:");
	s.nvctx = status_field(text, "nonvoluntary_ctxt_switches:");
	s.cpu_s = cpu_of(pid);
	return s;
}

/* CPU seconds of pid's children (the co-process). */
static double children_cpu(int pid)
{
	char path[96], text[4096];
	snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n < 0)
		return -1;
	text[n] = '\0';
	double sum = 0;
	for (char *tok = strtok(text, " \n"); tok; tok = strtok(NULL, " \n")) {
		double c = cpu_of(atoi(tok));
		if (c > 0)
			sum += c;
	}
	return sum;
}

static long rows_of(struct client *c, const char *ws)
{
	char path[160];
	snprintf(path, sizeof path, "/_control/workspaces/%s", ws);
	jv v = ctl(c, "GET", path, jv_invalid());
	jv rows = jv_object_get(v, jv_string("rows"));
	long n = jv_get_kind(rows) == JV_KIND_NUMBER ? (long)jv_number_value(rows) : 0;
	jv_free(rows);
	return n;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int cmd_wait(struct opts *o)
{
	char *peers[256];
	if (!o->peers || o->target <= 0 || o->pid <= 0)
		die("wait needs --peers, --target and --pid");
	char *list = strdup(o->peers);
	int np = split(list, peers, 256);
	struct client c;
	client_init(&c, o->url, NULL, NULL);
	double fake0 = o->fake_pid ? cpu_of(o->fake_pid) : -1;
	double t0 = mono_s();
	struct procstat last = sample(o->pid), s;
	double child_cpu = -1;
	long done = 0;
	bool timed_out = false;
	for (;;) {
		done = 0;
		for (int i = 0; i < np; i++)
			done += rows_of(&c, peers[i]);
		s = sample(o->pid);
		if (s.alive) {
			last = s;
			double cc = children_cpu(o->pid);
			if (cc >= 0)
				child_cpu = cc;
		}
		if (done >= o->target)
			break;
		if (!s.alive || mono_s() - t0 > (double)o->timeout) {
			timed_out = true;
			break;
		}
		sleep_ms(done * 10 > o->target * 9 ? 2 : 20);
	}
	double fake1 = o->fake_pid ? cpu_of(o->fake_pid) : -1;

	/* The exact end: the last reply post the platform saw, from its request log. */
	jv reqs = ctl(&c, "GET", "/_control/requests", jv_invalid());
	double first_ms = -1, last_post_ms = -1;
	long posts_ok = 0, posts = 0, gets = 0, others = 0;
	if (jv_get_kind(reqs) == JV_KIND_ARRAY) {
		jv_array_foreach(reqs, i, r) {
			jv m = jv_object_get(jv_copy(r), jv_string("method"));
			jv p = jv_object_get(jv_copy(r), jv_string("path"));
			jv st = jv_object_get(jv_copy(r), jv_string("status"));
			jv t = jv_object_get(r, jv_string("t_ms"));
			const char *method = jv_get_kind(m) == JV_KIND_STRING ? jv_string_value(m) : "";
			const char *path = jv_get_kind(p) == JV_KIND_STRING ? jv_string_value(p) : "";
			double status = jv_get_kind(st) == JV_KIND_NUMBER ? jv_number_value(st) : 0;
			double tms = jv_get_kind(t) == JV_KIND_NUMBER ? jv_number_value(t) : -1;
			if (first_ms < 0 || (tms >= 0 && tms < first_ms))
				first_ms = tms;
			if (strcmp(method, "POST") == 0 && (ends_with(path, "/a2a") || ends_with(path, "/notify"))) {
				posts++;
				if (status >= 200 && status < 300) {
					posts_ok++;
					if (tms > last_post_ms)
						last_post_ms = tms;
				}
			} else if (strcmp(method, "GET") == 0 && strstr(path, "/activity")) {
				gets++;
			} else {
				others++;
			}
			jv_free(m);
			jv_free(p);
			jv_free(st);
			jv_free(t);
		}
	}
	jv_free(reqs);
	printf("{\"done\":%ld,\"timed_out\":%s,\"first_req_ms\":%.0f,\"last_post_ms\":%.0f,"
	       "\"posts_ok\":%ld,\"posts\":%ld,\"gets\":%ld,\"other_reqs\":%ld,"
	       "\"rss_kb\":%ld,\"hwm_kb\":%ld,\"anon_kb\":%ld,\"cpu_s\":%.3f,\"vctx\":%ld,\"nvctx\":%ld,"
	       "\"handler_cpu_s\":%.3f,\"fake_cpu_s\":%.3f}\n",
	       done, timed_out ? "true" : "false", first_ms, last_post_ms, posts_ok, posts, gets,
	       others, last.rss_kb, last.hwm_kb, last.anon_kb, last.cpu_s, last.vctx, last.nvctx, child_cpu,
	       fake0 >= 0 && fake1 >= 0 ? fake1 - fake0 : -1.0);
	free(list);
	client_free(&c);
	return timed_out ? 3 : 0;
}

/* ---------- handlers ---------- */

/*
 * Reads message lines, answers each with {"id","text":"echo: "+text}. Every line
 * that arrived in one read is answered in one write, so the handler costs as little
 * as a handler can. With a log, records per message: created_at, arrival and reply
 * times (wall clock, microseconds).
 */
/* ---------- floor: the resident memory of libcurl and libjq alone ---------- */

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

/* What any program on this machine's libcurl and libjq is resident for before it
 * does anything of its own: one request through the multi interface, one parse,
 * then nothing until a signal. */
static int cmd_floor(struct opts *o)
{
	if (!o->url)
		die("floor needs --url");
	CURLM *m = curl_multi_init();
	CURL *e = curl_easy_init();
	curl_easy_setopt(e, CURLOPT_URL, o->url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_multi_add_handle(m, e);
	int running = 1;
	while (running) {
		curl_multi_perform(m, &running);
		if (running)
			curl_multi_poll(m, NULL, 0, 1000, NULL);
	}
	jv_free(jv_parse("[]"));
	puts("ready");
	fflush(stdout);
	pause();
	curl_multi_remove_handle(m, e);
	curl_easy_cleanup(e);
	curl_multi_cleanup(m);
	return 0;
}

static int cmd_handler(FILE *log)
{
	struct buf in = { 0 }, out = { 0 };
	char chunk[1 << 16];
	bool eof = false;
	signal(SIGPIPE, SIG_IGN);
	while (!eof) {
		ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			eof = true;
			if (in.len == 0 || in.p[in.len - 1] != '\n')
				buf_add(&in, "\n", 1);
		} else {
			buf_add(&in, chunk, (size_t)n);
		}
		int64_t t_in = wall_us();
		size_t start = 0;
		out.len = 0;
		jv logs = jv_array();
		for (char *nl; (nl = memchr(in.p + start, '\n', in.len - start));) {
			size_t len = (size_t)(nl - (in.p + start));
			if (len > 0) {
				jv v = jv_parse_sized(in.p + start, (int)len);
				if (jv_get_kind(v) == JV_KIND_OBJECT) {
					jv id = jv_object_get(jv_copy(v), jv_string("id"));
					jv text = jv_object_get(jv_copy(v), jv_string("text"));
					if (jv_get_kind(text) != JV_KIND_STRING) {
						jv_free(text);
						text = jv_string("");
					}
					if (log) {
						jv e = jv_object_set(jv_object(), jv_string("text"), jv_copy(text));
						e = jv_object_set(e, jv_string("created_at"),
								  jv_object_get(jv_copy(v), jv_string("created_at")));
						e = jv_object_set(e, jv_string("in_us"), jv_number((double)t_in));
						logs = jv_array_append(logs, e);
					}
					jv r = jv_object_set(jv_object(), jv_string("id"), id);
					r = jv_object_set(r, jv_string("text"), jv_string_concat(jv_string("echo: "), text));
					jv s = jv_dump_string(r, 0);
					buf_add(&out, jv_string_value(s), (size_t)jv_string_length_bytes(jv_copy(s)));
					buf_add(&out, "\n", 1);
					jv_free(s);
				}
				jv_free(v);
			}
			start += len + 1;
		}
		memmove(in.p, in.p + start, in.len - start);
		in.len -= start;
		int64_t t_out = wall_us();
		for (size_t off = 0; off < out.len;) {
			ssize_t w = write(STDOUT_FILENO, out.p + off, out.len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return 1;
			off += (size_t)w;
		}
		if (log) {
			jv_array_foreach(logs, i, e) {
				e = jv_object_set(e, jv_string("out_us"), jv_number((double)t_out));
				jv s = jv_dump_string(e, 0);
				fprintf(log, "%s\n", jv_string_value(s));
				jv_free(s);
			}
			fflush(log);
		}
		jv_free(logs);
	}
	free(in.p);
	free(out.p);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "echo") == 0)
		return cmd_handler(NULL);
	if (strcmp(cmd, "stamp") == 0) {
		if (argc < 3)
			die("stamp needs a log file");
		FILE *log = fopen(argv[2], "a");
		if (!log)
			die("%s: %s", argv[2], strerror(errno));
		int rc = cmd_handler(log);
		fclose(log);
		return rc;
	}
	struct opts o;
	parse_opts(argc, argv, &o);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc;
	if (strcmp(cmd, "ceiling") == 0)
		rc = cmd_ceiling(&o);
	else if (strcmp(cmd, "queue") == 0)
		rc = cmd_queue(&o);
	else if (strcmp(cmd, "trickle") == 0)
		rc = cmd_trickle(&o);
	else if (strcmp(cmd, "wait") == 0)
		rc = cmd_wait(&o);
	else if (strcmp(cmd, "floor") == 0)
		rc = cmd_floor(&o);
	else {
		fputs(usage_text, stderr);
		rc = 2;
	}
	curl_global_cleanup();
	return rc;
}
