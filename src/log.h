/* log.h: diagnostics on stderr, levels, text or JSON lines, secret redaction. */
#ifndef MC_LOG_H
#define MC_LOG_H

#include <stdbool.h>
#include <stddef.h>

/* LV_DEBUG (-v): one line per step of each message, cursor moves, progress.
 * LV_TRACE (-vv): every HTTP request as well. */
enum log_level { LV_ERROR = 0, LV_WARN = 1, LV_INFO = 2, LV_DEBUG = 3, LV_TRACE = 4 };

/* Progress lines (a replay read back, a backlog handed out) at -v: at most
 * one this often (see once_per in util.h). */
#define LOG_PROGRESS_EVERY_MS 1000

/* A named count of a log line: "<value> <label>" in text, "<key>": value in JSON. */
struct log_count {
	const char *key;
	const char *label;
	long value;
};

/* verbosity: -1 quiet (errors only), 0 warnings+info, 1 debug, 2 or more trace. */
void log_init(int verbosity, bool json);
/* Every later log line has each occurrence of s replaced by "[redacted]". */
void log_add_secret(const char *s);
bool log_enabled(enum log_level lv);
void log_msg(enum log_level lv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line a handler wrote on its stderr (line[0..len), no newline), as a log
 * line of its own at level info: with --log-format json an object with ts,
 * level, handler, pid, conversation (when given) and msg; else
 * "molecule-connect: HANDLER[PID]: line". Secrets are redacted here too. */
void log_handler(const char *handler, long pid, const char *conversation, const char *line, size_t len);
/* One line: "<head>: <value> <label>, ..." as text; with --log-format json
 * msg holds that text and each count is a numeric field of its own. */
void log_counts(enum log_level lv, const char *head, const struct log_count *counts, size_t n);
_Noreturn void fatal(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LV_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LV_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LV_INFO, __VA_ARGS__)
/* The arguments are not evaluated unless the level is on. */
#define log_debug(...) do { if (log_enabled(LV_DEBUG)) log_msg(LV_DEBUG, __VA_ARGS__); } while (0)
#define log_trace(...) do { if (log_enabled(LV_TRACE)) log_msg(LV_TRACE, __VA_ARGS__); } while (0)

#endif
