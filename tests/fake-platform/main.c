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
	fputs("usage: fake-platform --port-file FILE [--port N] [--org-id ID]\n"
	      "                     [--rate-limit N_PER_MIN (600; 0 = off)] [--log FILE]\n",
	      to);
	exit(code);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "port-file", required_argument, NULL, 'p' },
		{ "port", required_argument, NULL, 'P' },
		{ "org-id", required_argument, NULL, 'o' },
		{ "rate-limit", required_argument, NULL, 'r' },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *port_file = NULL, *log_path = NULL;
	long port = 0, rate = 600;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'p': port_file = optarg; break;
		case 'P':
			if (parse_long(optarg, 0, 65535, &port) != 0)
				usage(stderr, 2);
			break;
		case 'o': platform.org_id = optarg; break;
		case 'r':
			if (parse_long(optarg, 0, 100000000, &rate) != 0)
				usage(stderr, 2);
			break;
		case 'l': log_path = optarg; break;
		case 'h': usage(stdout, 0);
		default: usage(stderr, 2);
		}
	}
	if (!port_file || optind != argc)
		usage(stderr, 2);
	platform.rate_limit = (unsigned)rate;
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
	write_port_file(port_file, info->port);

	int sig;
	while (sigwait(&stop_signals, &sig) != 0)
		;
	atomic_store(&stopping, true);
	MHD_stop_daemon(d);
	store_free();
	if (platform.log)
		fclose(platform.log);
	return 0;
}
