/* main.c: the fake platform's start-up: options, the listening socket, the port file, and stopping on a signal. */
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake.h"

static void write_port_file(const char *path, unsigned port)
{
	size_t n = strlen(path) + 32;
	char *tmp = xmalloc(n);
	snprintf(tmp, n, "%s.%ld.tmp", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		die("%s: %s", tmp, strerror(errno));
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("%s: %s", path, strerror(errno));
	free(tmp);
}

static void usage(FILE *to, int code) __attribute__((noreturn));
static void usage(FILE *to, int code)
{
	fputs("usage: fake-platform --port-file FILE [--port N] [--log FILE] [--org-id ORG]\n"
	      "         [--rate-limit N|unlimited (600 a window; 0: off)] [--rate-window-ms N (60000)]\n"
	      "         [--awaiting-after-ms N (180000)] [--sweep-ms N (15000; 0: on request)]\n"
	      "         [--degraded-ms N (300000)] [--upload-ttl-ms N (86400000)]\n"
	      "         [--no-ack] [--no-events] [--missing-org-404]\n"
	      "See tests/fake-platform/README.md.\n",
	      to);
	exit(code);
}

/* A duration option in milliseconds, 0 to 30 days. */
static long option_ms(const char *arg)
{
	long v;
	if (parse_long(arg, 0, 30L * 24 * 3600 * 1000, &v) != 0)
		usage(stderr, 2);
	return v;
}

int main(int argc, char **argv)
{
	enum { OPT_WINDOW = 256, OPT_AWAITING, OPT_SWEEP, OPT_DEGRADED, OPT_UPLOAD_TTL, OPT_NO_ACK,
	       OPT_NO_EVENTS, OPT_MISSING_ORG_404 };
	static const struct option options[] = {
		{ "port-file", required_argument, NULL, 'p' },
		{ "port", required_argument, NULL, 'P' },
		{ "org-id", required_argument, NULL, 'o' },
		{ "rate-limit", required_argument, NULL, 'r' },
		{ "rate-window-ms", required_argument, NULL, OPT_WINDOW },
		{ "awaiting-after-ms", required_argument, NULL, OPT_AWAITING },
		{ "sweep-ms", required_argument, NULL, OPT_SWEEP },
		{ "degraded-ms", required_argument, NULL, OPT_DEGRADED },
		{ "upload-ttl-ms", required_argument, NULL, OPT_UPLOAD_TTL },
		{ "no-ack", no_argument, NULL, OPT_NO_ACK },
		{ "no-events", no_argument, NULL, OPT_NO_EVENTS },
		{ "missing-org-404", no_argument, NULL, OPT_MISSING_ORG_404 },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *port_file = NULL, *log_path = NULL;
	long port = 0;
	int opt;

	platform.rate_limit = 600;
	platform.rate_window_ms = 60000;
	platform.awaiting_after_ms = 180000;
	platform.sweep_ms = 15000;
	platform.degraded_ms = 300000;
	platform.upload_ttl_ms = 24L * 3600 * 1000;
	platform.acks_enabled = platform.events_enabled = true;
	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'p': port_file = optarg; break;
		case 'P':
			if (parse_long(optarg, 0, 65535, &port) != 0)
				usage(stderr, 2);
			break;
		case 'o': platform.org_id = optarg; break;
		case 'r':
			platform.rate_unlimited = strcmp(optarg, "unlimited") == 0;
			if (!platform.rate_unlimited &&
			    parse_long(optarg, 0, 100000000, &platform.rate_limit) != 0)
				usage(stderr, 2);
			break;
		case OPT_WINDOW:
			platform.rate_window_ms = option_ms(optarg);
			if (platform.rate_window_ms == 0)
				usage(stderr, 2);
			break;
		case OPT_AWAITING: platform.awaiting_after_ms = option_ms(optarg); break;
		case OPT_SWEEP: platform.sweep_ms = option_ms(optarg); break;
		case OPT_DEGRADED: platform.degraded_ms = option_ms(optarg); break;
		case OPT_UPLOAD_TTL: platform.upload_ttl_ms = option_ms(optarg); break;
		case OPT_NO_ACK: platform.acks_enabled = false; break;
		case OPT_NO_EVENTS: platform.events_enabled = false; break;
		case OPT_MISSING_ORG_404: platform.missing_org_404 = true; break;
		case 'l': log_path = optarg; break;
		case 'h': usage(stdout, 0);
		default: usage(stderr, 2);
		}
	}
	if (!port_file || optind != argc)
		usage(stderr, 2);
	if (log_path) {
		platform.log = fopen(log_path, "a");
		if (!platform.log)
			die("%s: %s", log_path, strerror(errno));
		setvbuf(platform.log, NULL, _IOLBF, 0);
	}

	/* Every thread inherits this mask; the main thread takes the signals with sigwait. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct MHD_Daemon *d = http_start((uint16_t)port);
	if (!d)
		die("cannot listen on 127.0.0.1:%ld", port);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || info->port == 0)
		die("cannot tell the listening port");
	sweeper_start();
	write_port_file(port_file, info->port);

	int sig;
	while (sigwait(&stop_signals, &sig) != 0)
		;
	atomic_store(&stopping, true);
	/* Wakes the sweeper and every event stream, so that no thread waits on. */
	pthread_mutex_lock(&state_lock);
	pthread_cond_broadcast(&state_changed);
	pthread_mutex_unlock(&state_lock);
	sweeper_stop();
	MHD_stop_daemon(d);
	store_free();
	if (platform.log)
		fclose(platform.log);
	return 0;
}
