/* optvalue.c: option values checked and read: the API URL, the token, the token file, the agent card. */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "options_internal.h"
#include "json.h"
#include "util.h"

#define DEFAULT_DESCRIPTION "External workspace bridged by molecule-connect"
/* The register body carrying the card must stay well under the platform's 1 MiB. */
#define AGENT_CARD_MAX (512 * 1024)
/* A token is 43 characters; anything near this is not a token file. */
#define TOKEN_LINE_MAX 4096

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

enum parse_result optvalue_api_url(struct settings *s, const char *what, const char *value, enum source src)
{
	size_t scheme;
	if (strncasecmp(value, "http://", 7) == 0)
		scheme = 7;
	else if (strncasecmp(value, "https://", 8) == 0)
		scheme = 8;
	else
		return options_value_error(src, "%s: '%s' is not a URL: it must start with http:// or https://",
					   what, value);
	for (const char *c = value; *c; c++)
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return options_value_error(src, "%s: the URL contains a space or control character", what);
	size_t len = strlen(value);
	while (len > scheme && value[len - 1] == '/')
		len--;
	char *url = xstrndup(value, len);
	char *host = url_host(url);
	bool empty = host[0] == '\0';
	free(host);
	if (empty) {
		free(url);
		return options_value_error(src, "%s: '%s' has no host", what, value);
	}
	free(s->api_url);
	s->api_url = url;
	return PARSE_GO_ON;
}

/* Anything outside visible ASCII would break the header or smuggle in another one. */
bool optvalue_header_safe(const char *t)
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

enum parse_result optvalue_token(struct parse *p, char *value, enum source src)
{
	struct settings *s = p->s;
	char *token = trim_dup(value, strlen(value));
	if (src == SRC_OPTION)
		/* Hide it from /proc/PID/cmdline and ps as soon as it is copied. */
		memset(value, '*', strlen(value));
	if (!optvalue_header_safe(token)) {
		free(token);
		return options_value_error(src, "%s: the token is empty or contains a space or control character",
					   src == SRC_ENV ? TOKEN_ENV : "--token");
	}
	free(s->token);
	s->token = token;
	options_set_string(&s->token_source, src == SRC_ENV ? "environment" : "option");
	return PARSE_GO_ON;
}

enum parse_result optvalue_token_file(const char *path, char **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return options_config_error("cannot open token file '%s': %s", path, strerror(errno));
	struct stat st;
	int bad = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
	if (bad) {
		close(fd);
		return options_config_error("cannot read token file '%s': %s", path, strerror(bad));
	}
	/* Refuse before reading: a token others can read is already compromised,
	 * and one others can write may be swapped under us. */
	if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
		close(fd);
		return options_config_error("token file '%s' is accessible by other users (mode %04o); "
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
			return options_config_error("cannot read token file '%s': %s", path, strerror(saved));
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
		return options_config_error("token file '%s': the first line is too long for a token", path);
	size_t line = nl ? (size_t)(nl - buf) : len;
	bool has_nul = memchr(buf, '\0', line) != NULL;
	char *token = trim_dup(buf, line);
	memset(buf, 0, sizeof buf);
	if (!*token && !has_nul) {
		free(token);
		return options_config_error("token file '%s' is empty", path);
	}
	if (has_nul || !optvalue_header_safe(token)) {
		free(token);
		return options_config_error("token file '%s': the token contains a space or control character", path);
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

enum parse_result optvalue_agent_card(struct parse *p)
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
			return options_config_error("agent card '%s' is larger than %d bytes", path, AGENT_CARD_MAX);
		if (err)
			return options_config_error("cannot read agent card '%s': %s", path, strerror(err));
		card = jv_parse_sized(text, (int)len);
		free(text);
		if (!jv_is_valid(card)) {
			char *reason = json_error(card);
			enum parse_result rc = options_config_error("agent card '%s' is not valid JSON: %s", path, reason);
			free(reason);
			return rc;
		}
		if (jv_get_kind(card) != JV_KIND_OBJECT) {
			const char *kind = jv_kind_name(jv_get_kind(card));
			jv_free(card);
			return options_config_error("agent card '%s' must be a JSON object (found %s)", path, kind);
		}
		jv name = json_field(card, "name");
		jv_kind nk = jv_get_kind(name);
		if (!options_given(p, "name") && nk == JV_KIND_STRING)
			options_set_string(&s->name, jv_string_value(name));
		jv_free(name);
		if (!options_given(p, "name") && nk != JV_KIND_STRING && json_has(card, "name")) {
			jv_free(card);
			return options_config_error("agent card '%s': \"name\" must be a string", path);
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

/* Plain http sends the token in clear text. */
enum parse_result optvalue_transport(const struct settings *s)
{
	if (strncasecmp(s->api_url, "http://", 7) != 0 || s->allow_insecure_http)
		return PARSE_GO_ON;
	char *host = url_host(s->api_url);
	bool local = host_is_loopback(host);
	free(host);
	if (local)
		return PARSE_GO_ON;
	return options_config_error("refusing plain http to '%s': the token would cross the network "
				    "unencrypted; use https:// or --allow-insecure-http", s->api_url);
}
