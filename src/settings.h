/* settings.h: the resolved configuration, filled by options.c, read everywhere else. */
#ifndef MC_SETTINGS_H
#define MC_SETTINGS_H

#include <stdbool.h>
#include <jv.h>

enum exec_input { EXEC_INPUT_TEXT, EXEC_INPUT_JSON };
/* --per: what makes a conversation (one co-process each). */
enum per_by { PER_NONE, PER_PEER, PER_CONTEXT };

struct settings {
	char *workspace_id;       /* validated UUID */
	char *api_url;            /* no trailing slash */
	char *token;              /* secret: never logged; NULL when unset */
	char *token_source;       /* "environment", "file", "option", "state" or NULL */
	char *org_id;             /* NULL when unset */
	char *state_dir;
	double interval;          /* seconds between polls */
	double idle_interval;     /* seconds between polls once quiet, without the event stream */
	enum events_mode { EVENTS_AUTO, EVENTS_ON, EVENTS_OFF } events; /* the event stream as a wake-up */
	double heartbeat;         /* seconds between heartbeats */
	long since_secs;          /* backlog replayed on a first start */
	long max_file_size;       /* bytes: a canvas upload larger than this is not fetched */
	long max_inflight;
	char *name;               /* agent card name */
	jv agent_card;            /* object, always valid after option parsing */
	char *filter;             /* jq program or NULL */
	char *reply_filter;       /* jq program or NULL */
	bool once;
	bool send;                /* --send: post the {"to":...} lines of stdin, then exit */
	double post_timeout;      /* seconds one attempt to post may take */
	double stall_report;     /* seconds between reports of posts that keep failing */
	long max_messages;        /* 0: no limit */
	bool dry_run;
	int verbosity;            /* -1 quiet, 0 normal, >= 1 verbose */
	bool log_json;
	double drain_timeout;     /* seconds */
	bool allow_insecure_http;
	/* Backends. */
	char **command;           /* argv after "--", NULL-terminated, or NULL */
	char *exec;               /* --exec shell command or NULL */
	enum exec_input exec_input;
	double exec_timeout;
	long concurrency;
	long restart_limit;
	char *per;                /* --per as given ("peer", "context") or NULL */
	enum per_by per_by;       /* the same, resolved */
	long max_procs;           /* --per: co-processes alive at once */
	double idle_exit;         /* --per: seconds before a quiet co-process is closed; 0: never */
	double reply_timeout;     /* seconds a co-process may hold one message; 0: no limit */
	/* Start-up found stdout closed (now /dev/null): nobody can read messages. */
	bool stdout_closed;
};

#endif
