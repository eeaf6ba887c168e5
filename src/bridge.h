/* bridge.h: the running bridge's one record, its phases and modes; private to the loop's modules. */
#ifndef MC_BRIDGE_H
#define MC_BRIDGE_H

#include <stdbool.h>
#include <stdint.h>
#include <curl/curl.h>
#include <jv.h>

#include "exitcode.h"
#include "settings.h"
#include "ack.h"
#include "coproc.h"
#include "dispatch.h"
#include "events.h"
#include "exec.h"
#include "fetch.h"
#include "runlimit.h"
#include "pace.h"
#include "report.h"
#include "save.h"
#include "session.h"
#include "uploads.h"

/* Which backend answers the messages. */
enum bridge_mode {
	MODE_FILTER,  /* lines on stdout, replies on stdin */
	MODE_COPROC,  /* -- COMMAND: co-processes' stdin and stdout (one, or one per conversation) */
	MODE_EXEC,    /* --exec: one shell command per message */
};

enum bridge_phase {
	PH_REGISTER,  /* nothing is fetched before the platform knows the workspace */
	PH_RUN,
	PH_DRAIN,     /* no new work: what is open finishes, or --drain-timeout passes */
	PH_END,       /* set by bridge_stop only: the loop ends */
};

/* Each module keeps its state in its own member and changes only that; the
 * rest it reads. */
struct bridge {
	struct settings *s;
	enum bridge_mode mode;
	enum bridge_phase phase;
	int exit_status;         /* an enum exit_code, or a failing co-process's own status */
	bool posts_only;         /* draining: no handler will answer any more */
	struct http *h;
	struct inbox *ib;
	struct outbox *ob;
	jv st;                   /* the state object the state file holds */
	int lock_fd;
	int sig_fd;
	int signals;             /* stop signals received */
	int64_t started, drain_deadline;
	struct session session;  /* session.c */
	struct fetcher fetch;    /* fetch.c */
	struct pace pace;        /* pace.c */
	struct events events;    /* events.c */
	struct dispatch dispatch; /* dispatch.c */
	struct coprocs co;       /* coproc.c */
	struct exec_pool exec;   /* exec.c */
	struct saver save;       /* save.c */
	struct acker ack;        /* ack.c */
	struct uploads up;       /* uploads.c */
	struct runlimit runlimit; /* runlimit.c */
	struct report report;    /* report.c */
};

/* Ends the run with status (enum exit_code, or a handler's own). The first
 * stop wins: a later one changes nothing. why is logged at -v. */
void bridge_stop(struct bridge *b, int status, const char *why);
/* No new work from now on; what is open finishes within --drain-timeout.
 * posts_only: no handler will answer any more, so only posts are awaited.
 * While registering there is nothing to finish: the run ends at once. */
void bridge_drain(struct bridge *b, const char *why, bool posts_only);

/* The descriptors one turn of the loop waits on besides libcurl's own. */
struct pollset {
	struct curl_waitfd *fds;
	unsigned n;
	size_t cap;
};
/* Adds fd with CURL_WAIT_* events; returns its slot. */
unsigned pollset_add(struct pollset *ps, int fd, short events);

#endif
