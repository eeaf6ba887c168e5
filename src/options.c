/* options.c: the command line, environment and defaults into struct settings; --help, --version, --dry-run. */
#include <config.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "options.h"
#include "state.h"
#include "json.h"
#include "util.h"

#define PROG PACKAGE_NAME
#define TOKEN_ENV "MOLECULE_WORKSPACE_TOKEN"
#define DEFAULT_DESCRIPTION "External workspace bridged by molecule-connect"
/* The register body carrying the card must stay well under the platform's 1 MiB. */
#define AGENT_CARD_MAX (512 * 1024)
/* A token is 43 characters; anything near this is not a token file. */
#define TOKEN_LINE_MAX 4096
#if LONG_MAX > 2147483647L
#define MAX_MESSAGES_MAX 2147483648L
#else
#define MAX_MESSAGES_MAX LONG_MAX
#endif

/* How an option's value is applied. The first four kinds are generic and go
 * through offset; the rest are handled one by one in apply(). */
enum arg_kind {
	K_FLAG,         /* bool field set to true */
	K_STRING,       /* char * field, replaced */
	K_SECONDS,      /* double field, parse_seconds within [min, max] */
	K_COUNT,        /* long field, parse_long within [min, max] */
	K_API_URL,
	K_TOKEN,
	K_TOKEN_FILE,
	K_AGENT_CARD,
	K_LOG_FORMAT,
	K_EXEC,
	K_EXEC_INPUT,
	K_VERBOSE,
	K_QUIET,
	K_HELP,
	K_VERSION,
};

struct option_spec {
	const char *long_name;
	char short_name;        /* 0: long form only */
	const char *arg;        /* argument name in --help; NULL: takes no argument */
	const char *env;        /* environment fallback, or NULL */
	const char *dflt;       /* applied before parsing and shown in --help, or NULL */
	const char *help;
	enum arg_kind kind;
	size_t offset;          /* field of struct settings, generic kinds only */
	double min, max;        /* range of the numeric kinds */
};

#define FIELD(f) offsetof(struct settings, f)

/* The one table: getopt_long's array, the defaults, the environment fallbacks
 * and --help all come from it. */
static const struct option_spec specs[] = {
	{ .long_name = "api-url", .arg = "URL", .env = "MOLECULE_API_URL",
	  .dflt = "http://localhost:8080", .kind = K_API_URL,
	  .help = "platform base URL" },
	{ .long_name = "token-file", .arg = "FILE", .kind = K_TOKEN_FILE,
	  .help = "read the workspace token from the first line of FILE (mode 600)" },
	{ .long_name = "token", .arg = "TOKEN", .env = TOKEN_ENV, .kind = K_TOKEN,
	  .help = "workspace token (other users can see it in ps: prefer the environment)" },
	{ .long_name = "org-id", .arg = "ID", .env = "MOLECULE_ORG_ID",
	  .kind = K_STRING, .offset = FIELD(org_id),
	  .help = "tenant org id, sent as X-Molecule-Org-Id" },
	{ .long_name = "state-dir", .arg = "DIR", .kind = K_STRING, .offset = FIELD(state_dir),
	  .help = "cursor and unsent replies (default $XDG_CONFIG_HOME/molecule/state, "
		  "else ~/.config/molecule/state)" },
	{ .long_name = "interval", .arg = "SECS", .dflt = "1", .kind = K_SECONDS,
	  .offset = FIELD(interval), .min = 0.05, .max = 3600,
	  .help = "seconds between polls (0.05..3600)" },
	{ .long_name = "heartbeat", .arg = "SECS", .dflt = "30", .kind = K_SECONDS,
	  .offset = FIELD(heartbeat), .min = 1, .max = 3600,
	  .help = "seconds between heartbeats (1..3600)" },
	{ .long_name = "since-secs", .arg = "N", .dflt = "30", .kind = K_COUNT,
	  .offset = FIELD(since_secs), .min = 0, .max = 2592000,
	  .help = "backlog replayed on a first start, in seconds (0..2592000)" },
	{ .long_name = "max-inflight", .arg = "N", .dflt = "16", .kind = K_COUNT,
	  .offset = FIELD(max_inflight), .min = 1, .max = 10000,
	  .help = "messages handed out and not yet done, at most (1..10000)" },
	{ .long_name = "name", .arg = "NAME", .dflt = PACKAGE_NAME, .kind = K_STRING,
	  .offset = FIELD(name),
	  .help = "agent card name" },
	{ .long_name = "agent-card", .arg = "FILE", .kind = K_AGENT_CARD,
	  .help = "agent card from a JSON object file (--name overrides its name)" },
	{ .long_name = "filter", .arg = "JQ", .kind = K_STRING, .offset = FIELD(filter),
	  .help = "jq program run on each message before it is written; no output skips it" },
	{ .long_name = "reply-filter", .arg = "JQ", .kind = K_STRING, .offset = FIELD(reply_filter),
	  .help = "jq program mapping each handler output line to a reply" },
	{ .long_name = "exec", .arg = "CMD", .kind = K_EXEC,
	  .help = "run the shell command CMD once per message" },
	{ .long_name = "exec-input", .arg = "MODE", .dflt = "text", .kind = K_EXEC_INPUT,
	  .help = "what --exec gets on stdin: text (the message text) or json (the message line)" },
	{ .long_name = "exec-timeout", .arg = "SECS", .dflt = "60", .kind = K_SECONDS,
	  .offset = FIELD(exec_timeout), .min = 0.1, .max = 86400,
	  .help = "kill an --exec command after SECS (0.1..86400)" },
	{ .long_name = "concurrency", .arg = "N", .dflt = "1", .kind = K_COUNT,
	  .offset = FIELD(concurrency), .min = 1, .max = 1024,
	  .help = "--exec commands running at once (1..1024)" },
	{ .long_name = "restart-limit", .arg = "N", .dflt = "5", .kind = K_COUNT,
	  .offset = FIELD(restart_limit), .min = 0, .max = 1000,
	  .help = "consecutive failed co-process restarts before giving up (0..1000)" },
	{ .long_name = "once", .kind = K_FLAG, .offset = FIELD(once),
	  .help = "handle what is waiting now, drain and exit" },
	{ .long_name = "max-messages", .arg = "N", .kind = K_COUNT, .offset = FIELD(max_messages),
	  .min = 1, .max = (double)MAX_MESSAGES_MAX,
	  .help = "exit after N messages are done (1..2147483648)" },
	{ .long_name = "drain-timeout", .arg = "SECS", .dflt = "10", .kind = K_SECONDS,
	  .offset = FIELD(drain_timeout), .min = 0, .max = 3600,
	  .help = "on shutdown, wait at most SECS for in-flight replies (0..3600)" },
	{ .long_name = "dry-run", .kind = K_FLAG, .offset = FIELD(dry_run),
	  .help = "print the resolved configuration and exit (no network, no state)" },
	{ .long_name = "allow-insecure-http", .kind = K_FLAG, .offset = FIELD(allow_insecure_http),
	  .help = "allow a plain http:// API URL that is not loopback" },
	{ .long_name = "log-format", .arg = "FORMAT", .dflt = "text", .kind = K_LOG_FORMAT,
	  .help = "stderr log lines: text or json" },
	{ .long_name = "verbose", .short_name = 'v', .kind = K_VERBOSE,
	  .help = "more log detail (repeatable)" },
	{ .long_name = "quiet", .short_name = 'q', .kind = K_QUIET,
	  .help = "errors only" },
	{ .long_name = "help", .short_name = 'h', .kind = K_HELP,
	  .help = "show this help and exit" },
	{ .long_name = "version", .short_name = 'V', .kind = K_VERSION,
	  .help = "show the version and exit" },
};

#define NSPECS (sizeof specs / sizeof specs[0])

enum source { SRC_DEFAULT, SRC_OPTION, SRC_ENV };

/* What parsing needs beyond the settings themselves. */
struct parse {
	struct settings *s;
	bool seen[NSPECS];      /* given on the command line */
	char *token_file;       /* read once every option is known */
	char *agent_card_file;
	int verbose, quiet;
};

static int spec_code(size_t i)
{
	return specs[i].short_name ? specs[i].short_name : 256 + (int)i;
}

static bool given(const struct parse *p, const char *long_name)
{
	for (size_t i = 0; i < NSPECS; i++)
		if (strcmp(specs[i].long_name, long_name) == 0)
			return p->seen[i];
	return false;
}

static enum parse_result usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static enum parse_result usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry '" PROG " --help' for more information.\n", stderr);
	return PARSE_BAD;
}

/* Configuration problems (files, environment) say what to fix in their one line. */
static enum parse_result config_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static enum parse_result config_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return PARSE_BAD;
}

/* An error in a value: after an option it is a usage error, from the
 * environment a configuration one. */
static enum parse_result value_error(enum source src, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static enum parse_result value_error(enum source src, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	return src == SRC_OPTION ? usage_error("%s", line) : config_error("%s", line);
}

static void set_string(char **field, const char *value)
{
	free(*field);
	*field = xstrdup(value);
}

static bool host_is_loopback(const char *host)
{
	unsigned char addr[16];
	if (strcasecmp(host, "localhost") == 0 || strcasecmp(host, "localhost.") == 0)
		return true;
	if (inet_pton(AF_INET, host, addr) == 1)
		return addr[0] == 127;
	if (inet_pton(AF_INET6, host, addr) == 1) {
		static const unsigned char one[16] = { [15] = 1 };
		return memcmp(addr, one, sizeof one) == 0;
	}
	return false;
}

/* The host of an http(s) URL (caller frees), without user info, port or brackets. */
static char *url_host(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	size_t authority = strcspn(p, "/?#");
	const char *at = memchr(p, '@', authority);
	while (at) { /* the last '@' ends the user info */
		authority -= (size_t)(at + 1 - p);
		p = at + 1;
		at = memchr(p, '@', authority);
	}
	if (*p == '[') {
		const char *close = memchr(p, ']', authority);
		if (!close)
			return xstrndup(p, authority);
		return xstrndup(p + 1, (size_t)(close - p - 1));
	}
	const char *colon = memchr(p, ':', authority);
	return xstrndup(p, colon ? (size_t)(colon - p) : authority);
}

static enum parse_result apply_api_url(struct settings *s, const char *what, const char *value, enum source src)
{
	size_t scheme;
	if (strncasecmp(value, "http://", 7) == 0)
		scheme = 7;
	else if (strncasecmp(value, "https://", 8) == 0)
		scheme = 8;
	else
		return value_error(src, "%s: '%s' is not a URL: it must start with http:// or https://",
				   what, value);
	for (const char *c = value; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return value_error(src, "%s: the URL contains a space or control character", what);
	size_t len = strlen(value);
	while (len > scheme && value[len - 1] == '/')
		len--;
	char *url = xstrndup(value, len);
	char *host = url_host(url);
	bool empty = host[0] == '\0';
	free(host);
	if (empty) {
		free(url);
		return value_error(src, "%s: '%s' has no host", what, value);
	}
	free(s->api_url);
	s->api_url = url;
	return PARSE_GO_ON;
}

/* Tokens and org ids go into HTTP headers: anything outside visible ASCII
 * would break the header or smuggle in another one. */
static bool header_safe(const char *t)
{
	if (!*t)
		return false;
	for (; *t; t++)
		if ((unsigned char)*t <= ' ' || (unsigned char)*t >= 0x7f)
			return false;
	return true;
}

/* A copy of p[0..len) without surrounding white space (a pasted newline). */
static char *trim_dup(const char *p, size_t len)
{
	while (len > 0 && strchr(" \t\r\n\f\v", p[0])) {
		p++;
		len--;
	}
	while (len > 0 && strchr(" \t\r\n\f\v", p[len - 1]))
		len--;
	return xstrndup(p, len);
}

static enum parse_result apply_token(struct parse *p, char *value, enum source src)
{
	struct settings *s = p->s;
	char *token = trim_dup(value, strlen(value));
	if (src == SRC_OPTION)
		/* Hide it from /proc/PID/cmdline and ps as soon as it is copied. */
		memset(value, '*', strlen(value));
	if (!header_safe(token)) {
		free(token);
		return value_error(src, "%s: the token is empty or contains a space or control character",
				   src == SRC_ENV ? TOKEN_ENV : "--token");
	}
	free(s->token);
	s->token = token;
	set_string(&s->token_source, src == SRC_ENV ? "environment" : "option");
	return PARSE_GO_ON;
}

static void print_help(void);
static void print_version(void);

/* Applies one value of spec from src. */
static enum parse_result apply(struct parse *p, const struct option_spec *spec, char *value, enum source src)
{
	struct settings *s = p->s;
	char what[64];
	if (src == SRC_ENV)
		snprintf(what, sizeof what, "%s", spec->env);
	else
		snprintf(what, sizeof what, "--%s", spec->long_name);
	char *base = (char *)s;

	switch (spec->kind) {
	case K_FLAG:
		*(bool *)(base + spec->offset) = true;
		break;
	case K_STRING:
		set_string((char **)(base + spec->offset), value);
		break;
	case K_SECONDS:
		if (parse_seconds(value, spec->min, spec->max, (double *)(base + spec->offset)) != 0)
			return value_error(src, "%s: '%s' is not a number of seconds from %g to %g",
					   what, value, spec->min, spec->max);
		break;
	case K_COUNT:
		if (parse_long(value, (long)spec->min, (long)spec->max, (long *)(base + spec->offset)) != 0)
			return value_error(src, "%s: '%s' is not a whole number from %.0f to %.0f",
					   what, value, spec->min, spec->max);
		break;
	case K_API_URL:
		return apply_api_url(s, what, value, src);
	case K_TOKEN:
		return apply_token(p, value, src);
	case K_TOKEN_FILE:
		set_string(&p->token_file, value);
		break;
	case K_AGENT_CARD:
		set_string(&p->agent_card_file, value);
		break;
	case K_LOG_FORMAT:
		if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0)
			return value_error(src, "%s: '%s' is not a log format: use text or json", what, value);
		s->log_json = strcmp(value, "json") == 0;
		break;
	case K_EXEC:
		if (!*value)
			return value_error(src, "%s: the command is empty", what);
		set_string(&s->exec, value);
		break;
	case K_EXEC_INPUT:
		if (strcmp(value, "text") == 0)
			s->exec_input = EXEC_INPUT_TEXT;
		else if (strcmp(value, "json") == 0)
			s->exec_input = EXEC_INPUT_JSON;
		else
			return value_error(src, "%s: '%s' is not an input mode: use text or json", what, value);
		break;
	case K_VERBOSE:
		p->verbose++;
		break;
	case K_QUIET:
		p->quiet = 1;
		break;
	case K_HELP:
		print_help();
		return PARSE_DONE;
	case K_VERSION:
		print_version();
		return PARSE_DONE;
	}
	return PARSE_GO_ON;
}

/* The first line of path, trimmed, into *out. */
static enum parse_result read_token_file(const char *path, char **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return config_error("cannot open token file '%s': %s", path, strerror(errno));
	struct stat st;
	int bad = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (bad) {
		close(fd);
		return config_error("cannot read token file '%s': %s", path, strerror(bad));
	}
	/* Refuse before reading: a token others can read is already compromised,
	 * and one others can write may be swapped under us. */
	if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
		close(fd);
		return config_error("token file '%s' is accessible by other users (mode %04o); "
				    "run 'chmod 600 %s'", path, (unsigned)(st.st_mode & 07777), path);
	}
	char buf[TOKEN_LINE_MAX];
	size_t len = 0;
	while (len < sizeof buf) {
		ssize_t n = read(fd, buf + len, sizeof buf - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;
			close(fd);
			return config_error("cannot read token file '%s': %s", path, strerror(saved));
		}
		if (n == 0 || memchr(buf + len, '\n', (size_t)n)) {
			len += (size_t)n;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	char *nl = memchr(buf, '\n', len);
	if (!nl && len == sizeof buf)
		return config_error("token file '%s': the first line is too long for a token", path);
	size_t line = nl ? (size_t)(nl - buf) : len;
	bool has_nul = memchr(buf, '\0', line) != NULL;
	char *token = trim_dup(buf, line);
	memset(buf, 0, sizeof buf);
	if (!*token && !has_nul) {
		free(token);
		return config_error("token file '%s' is empty", path);
	}
	if (has_nul || !header_safe(token)) {
		free(token);
		return config_error("token file '%s': the token contains a space or control character", path);
	}
	*out = token;
	return PARSE_GO_ON;
}

/* Reads a whole file of at most max bytes (caller frees *out). 0 or errno. */
static int slurp(const char *path, size_t max, char **out, size_t *out_len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno;
	struct buf b = { 0 };
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (b.len + n > max) {
			fclose(f);
			buf_free(&b);
			return EFBIG;
		}
		buf_append(&b, chunk, n);
	}
	int err = ferror(f) ? (errno ? errno : EIO) : 0;
	fclose(f);
	if (err) {
		buf_free(&b);
		return err;
	}
	*out = b.p ? b.p : xstrdup("");
	*out_len = b.len;
	return 0;
}

/* The card from --agent-card (or an empty one), with name, description and
 * version filled in. */
static enum parse_result build_agent_card(struct parse *p)
{
	struct settings *s = p->s;
	jv card;
	if (!p->agent_card_file) {
		card = jv_object();
	} else {
		const char *path = p->agent_card_file;
		char *text;
		size_t len;
		int err = slurp(path, AGENT_CARD_MAX, &text, &len);
		if (err == EFBIG)
			return config_error("agent card '%s' is larger than %d bytes", path, AGENT_CARD_MAX);
		if (err)
			return config_error("cannot read agent card '%s': %s", path, strerror(err));
		card = jv_parse_sized(text, (int)len);
		free(text);
		if (!jv_is_valid(card)) {
			char *reason = json_error(card);
			enum parse_result rc = config_error("agent card '%s' is not valid JSON: %s", path, reason);
			free(reason);
			return rc;
		}
		if (jv_get_kind(card) != JV_KIND_OBJECT) {
			const char *kind = jv_kind_name(jv_get_kind(card));
			jv_free(card);
			return config_error("agent card '%s' must be a JSON object (found %s)", path, kind);
		}
		jv name = json_field(card, "name");
		jv_kind nk = jv_get_kind(name);
		if (!given(p, "name") && nk == JV_KIND_STRING)
			set_string(&s->name, jv_string_value(name));
		jv_free(name);
		if (!given(p, "name") && nk != JV_KIND_STRING && json_has(card, "name")) {
			jv_free(card);
			return config_error("agent card '%s': \"name\" must be a string", path);
		}
	}
	card = jv_object_set(card, jv_string("name"), jv_string(s->name));
	if (!json_has(card, "description"))
		card = jv_object_set(card, jv_string("description"), jv_string(DEFAULT_DESCRIPTION));
	if (!json_has(card, "version"))
		card = jv_object_set(card, jv_string("version"), jv_string(PACKAGE_VERSION));
	jv_free(s->agent_card);
	s->agent_card = card;
	return PARSE_GO_ON;
}

static enum parse_result resolve_state_dir(struct settings *s)
{
	if (!s->state_dir) {
		const char *xdg = getenv("XDG_CONFIG_HOME");
		const char *home = getenv("HOME");
		/* The same rule as Go's os.UserConfigDir, so both clients share the file. */
		if (xdg && *xdg)
			s->state_dir = xasprintf("%s/molecule/state", xdg);
		else if (home && *home)
			s->state_dir = xasprintf("%s/.config/molecule/state", home);
		else
			return config_error("no state directory: set --state-dir, XDG_CONFIG_HOME or HOME");
	}
	size_t len = strlen(s->state_dir);
	if (len == 0)
		return usage_error("--state-dir: the directory name is empty");
	while (len > 1 && s->state_dir[len - 1] == '/')
		s->state_dir[--len] = '\0';
	return PARSE_GO_ON;
}

/* Plain http sends the token in clear text: only to this machine unless told. */
static enum parse_result check_transport(const struct settings *s)
{
	if (strncasecmp(s->api_url, "http://", 7) != 0 || s->allow_insecure_http)
		return PARSE_GO_ON;
	char *host = url_host(s->api_url);
	bool local = host_is_loopback(host);
	free(host);
	if (local)
		return PARSE_GO_ON;
	return config_error("refusing plain http to '%s': the token would cross the network "
			    "unencrypted; use https:// or --allow-insecure-http", s->api_url);
}

/* Checks what only makes sense once every option is known. */
static enum parse_result finish(struct parse *p, const char *workspace_id, char **command, int ncommand)
{
	struct settings *s = p->s;
	enum parse_result rc;

	if (!workspace_id)
		return usage_error("missing WORKSPACE_ID");
	if (!uuid_valid(workspace_id)) {
		char *lower = xstrdup(workspace_id);
		for (char *c = lower; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		bool only_case = uuid_valid(lower);
		free(lower);
		if (only_case)
			return usage_error("'%s' is not a workspace id: expected a lower-case UUID "
					   "(the platform compares ids as written)", workspace_id);
		return usage_error("'%.80s' is not a workspace id: expected a lower-case UUID "
				   "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits a-f0-9)",
				   workspace_id);
	}
	s->workspace_id = xstrdup(workspace_id);

	if (command) {
		if (ncommand == 0)
			return usage_error("no COMMAND after '--'");
		if (s->exec)
			return usage_error("--exec and '-- COMMAND' are exclusive: choose one backend");
		s->command = xcalloc((size_t)ncommand + 1, sizeof *s->command);
		for (int i = 0; i < ncommand; i++)
			s->command[i] = xstrdup(command[i]);
	}
	if (p->verbose && p->quiet)
		return usage_error("--verbose and --quiet are exclusive");
	s->verbosity = p->quiet ? -1 : p->verbose;
	if (s->org_id && !header_safe(s->org_id))
		return config_error("the org id contains a space or control character");
	if (given(p, "token") && given(p, "token-file"))
		return usage_error("--token and --token-file are exclusive");

	if (p->token_file) {
		char *token = NULL;
		if ((rc = read_token_file(p->token_file, &token)) != PARSE_GO_ON)
			return rc;
		free(s->token);
		s->token = token;
		set_string(&s->token_source, "file");
	}
	if ((rc = check_transport(s)) != PARSE_GO_ON)
		return rc;
	if ((rc = resolve_state_dir(s)) != PARSE_GO_ON)
		return rc;
	return build_agent_card(p);
}

/* How many long options arg ("--xy" or "--xy=v") abbreviates: getopt_long
 * reports an unknown and an ambiguous option alike. */
static int prefix_matches(const char *arg)
{
	if (strncmp(arg, "--", 2) != 0)
		return 0;
	arg += 2;
	size_t len = strcspn(arg, "=");
	int n = 0;
	for (size_t i = 0; i < NSPECS; i++)
		if (strncmp(specs[i].long_name, arg, len) == 0)
			n++;
	return n;
}

enum parse_result options_parse(int argc, char **argv, struct settings *s)
{
	memset(s, 0, sizeof *s);
	s->agent_card = jv_invalid();

	struct parse p = { .s = s };
	enum parse_result rc = PARSE_GO_ON;

	for (size_t i = 0; i < NSPECS && rc == PARSE_GO_ON; i++)
		if (specs[i].dflt)
			rc = apply(&p, &specs[i], (char *)specs[i].dflt, SRC_DEFAULT);

	/* "-": non-options come back in order as code 1, so the workspace id may sit
	 * among the options while everything after "--" is left for the command.
	 * ":": missing arguments are told apart from unknown options. */
	char shortopts[2 + 2 * NSPECS + 1];
	size_t ns = 0;
	shortopts[ns++] = '-';
	shortopts[ns++] = ':';
	struct option *longopts = xcalloc(NSPECS + 1, sizeof *longopts);
	for (size_t i = 0; i < NSPECS; i++) {
		longopts[i].name = specs[i].long_name;
		longopts[i].has_arg = specs[i].arg ? required_argument : no_argument;
		longopts[i].val = spec_code(i);
		if (specs[i].short_name) {
			shortopts[ns++] = specs[i].short_name;
			if (specs[i].arg)
				shortopts[ns++] = ':';
		}
	}
	shortopts[ns] = '\0';

	const char *workspace_id = NULL;
	bool dashes = false;    /* parsing stopped at "--": a co-process command follows */
	opterr = 0;
	optind = 0; /* 0: a full reinitialisation in glibc, so a second call works too */
	while (rc == PARSE_GO_ON) {
		int before = optind > 0 ? optind : 1;
		int c = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (c == -1) {
			/* Only a "--" getopt itself consumed counts, not one that was the
			 * argument of an option (--name --). */
			dashes = before < argc && strcmp(argv[before], "--") == 0;
			break;
		}
		if (c == 1) {
			if (!workspace_id)
				workspace_id = optarg;
			else
				rc = usage_error("unexpected argument '%s' (a co-process COMMAND goes after '--')",
						 optarg);
			continue;
		}
		if (c == ':' || c == '?') {
			const char *arg = argv[optind - 1];
			const char *name = NULL;
			for (size_t i = 0; i < NSPECS; i++)
				if (spec_code(i) == optopt)
					name = specs[i].long_name;
			if (c == ':')
				rc = usage_error("option '--%s' needs an argument", name ? name : "?");
			else if (name && strncmp(arg, "--", 2) == 0)
				rc = usage_error("option '--%s' does not take an argument", name);
			else if (optopt && optopt < 256)
				rc = usage_error("unknown option '-%c'", optopt);
			else
				rc = usage_error("%s option '%.*s'",
						 prefix_matches(arg) > 1 ? "ambiguous" : "unknown",
						 (int)strcspn(arg, "="), arg);
			continue;
		}
		for (size_t i = 0; i < NSPECS; i++)
			if (spec_code(i) == c) {
				p.seen[i] = true;
				rc = apply(&p, &specs[i], optarg, SRC_OPTION);
				break;
			}
	}
	free(longopts);

	/* The environment fills what the command line left; --token-file also
	 * stands in for the token variable. */
	for (size_t i = 0; i < NSPECS && rc == PARSE_GO_ON; i++) {
		const char *value = specs[i].env ? getenv(specs[i].env) : NULL;
		if (!value || !*value || p.seen[i])
			continue;
		if (specs[i].kind == K_TOKEN && given(&p, "token-file"))
			continue;
		rc = apply(&p, &specs[i], (char *)value, SRC_ENV);
	}

	if (rc == PARSE_GO_ON)
		rc = finish(&p, workspace_id, dashes ? argv + optind : NULL,
			    dashes ? argc - optind : 0);
	free(p.token_file);
	free(p.agent_card_file);
	return rc;
}

static void print_help(void)
{
	printf("Usage: " PROG " [OPTIONS] WORKSPACE_ID\n"
	       "       " PROG " [OPTIONS] WORKSPACE_ID -- COMMAND [ARG...]\n"
	       "       " PROG " [OPTIONS] --exec 'SHELL COMMAND' WORKSPACE_ID\n"
	       "\n"
	       "Bridges one Molecule workspace to a process: each inbound message is a JSON\n"
	       "line on stdout (or COMMAND's stdin), each reply a JSON line read back.\n"
	       "\n"
	       "Options:\n");
	char left[NSPECS][64];
	int width = 0;
	for (size_t i = 0; i < NSPECS; i++) {
		const struct option_spec *o = &specs[i];
		int n;
		if (o->short_name)
			n = snprintf(left[i], sizeof left[i], "  -%c, --%s%s%s", o->short_name,
				     o->long_name, o->arg ? " " : "", o->arg ? o->arg : "");
		else
			n = snprintf(left[i], sizeof left[i], "      --%s%s%s", o->long_name,
				     o->arg ? "=" : "", o->arg ? o->arg : "");
		if (n > width)
			width = n;
	}
	for (size_t i = 0; i < NSPECS; i++) {
		const struct option_spec *o = &specs[i];
		printf("%-*s  %s", width, left[i], o->help);
		if (o->env)
			printf(" [env %s]", o->env);
		if (o->dflt)
			printf(" [default %s]", o->dflt);
		putchar('\n');
	}
	printf("\nOptions override the environment, which overrides the defaults.\n"
	       "Exit status: 0 clean stop, 1 runtime error, 2 usage or configuration error.\n"
	       "See " PROG "(1) for the message and reply formats and the delivery guarantees.\n");
}

static void print_version(void)
{
	printf(PROG " " PACKAGE_VERSION "\n%s\n", curl_version());
}

/* Free text (programs, commands) may hold newlines: JSON-quote it to keep one line. */
static void print_quoted(const char *key, const char *value)
{
	if (!value) {
		printf("%s: (none)\n", key);
		return;
	}
	jv dumped = jv_dump_string(jv_string(value), 0);
	printf("%s: %s\n", key, jv_string_value(dumped));
	jv_free(dumped);
}

void options_print(const struct settings *s)
{
	printf("workspace_id: %s\n", s->workspace_id);
	printf("api_url: %s\n", s->api_url);
	printf("token: %s\n", s->token ? "set" : "unset");
	printf("token_source: %s\n", s->token_source ? s->token_source : "(none)");
	printf("org_id: %s\n", s->org_id ? s->org_id : "(none)");
	printf("state_dir: %s\n", s->state_dir);
	char *path = state_path(s->state_dir, s->workspace_id);
	printf("state_file: %s\n", path);
	free(path);
	printf("interval: %g\n", s->interval);
	printf("heartbeat: %g\n", s->heartbeat);
	printf("since_secs: %ld\n", s->since_secs);
	printf("max_inflight: %ld\n", s->max_inflight);
	print_quoted("name", s->name);
	jv card = jv_dump_string(jv_copy(s->agent_card), 0);
	printf("agent_card: %s\n", jv_string_value(card));
	jv_free(card);
	print_quoted("filter", s->filter);
	print_quoted("reply_filter", s->reply_filter);
	printf("once: %s\n", s->once ? "true" : "false");
	if (s->max_messages)
		printf("max_messages: %ld\n", s->max_messages);
	else
		printf("max_messages: (no limit)\n");
	printf("drain_timeout: %g\n", s->drain_timeout);
	printf("allow_insecure_http: %s\n", s->allow_insecure_http ? "true" : "false");
	printf("log_format: %s\n", s->log_json ? "json" : "text");
	printf("verbosity: %d\n", s->verbosity);
	if (s->command) {
		jv argv = jv_array();
		for (char **a = s->command; *a; a++)
			argv = jv_array_append(argv, jv_string(*a));
		jv dumped = jv_dump_string(argv, 0);
		printf("mode: coprocess\ncommand: %s\n", jv_string_value(dumped));
		jv_free(dumped);
		printf("restart_limit: %ld\n", s->restart_limit);
	} else if (s->exec) {
		printf("mode: exec\n");
		print_quoted("exec", s->exec);
		printf("exec_input: %s\n", s->exec_input == EXEC_INPUT_JSON ? "json" : "text");
		printf("exec_timeout: %g\n", s->exec_timeout);
		printf("concurrency: %ld\n", s->concurrency);
	} else {
		printf("mode: filter\n");
	}
}

void settings_free(struct settings *s)
{
	free(s->workspace_id);
	free(s->api_url);
	if (s->token) {
		/* Not a guarantee against every copy, but no freed page keeps it. */
		memset(s->token, 0, strlen(s->token));
		free(s->token);
	}
	free(s->token_source);
	free(s->org_id);
	free(s->state_dir);
	free(s->name);
	jv_free(s->agent_card);
	free(s->filter);
	free(s->reply_filter);
	if (s->command)
		for (char **a = s->command; *a; a++)
			free(*a);
	free(s->command);
	free(s->exec);
	memset(s, 0, sizeof *s);
	s->agent_card = jv_invalid();
}
