/* main.c: start-up: standard descriptors, signals, options, then the loop. */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "exitcode.h"
#include "log.h"
#include "loop.h"
#include "options.h"
#include "send.h"

/* A closed 0, 1 or 2 would be handed to the next open(): a socket or the state
 * file could then become stdout. Park /dev/null there instead. */
static int standard_fds_open(bool *stdout_closed)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
			continue;
		if (fd == STDOUT_FILENO)
			*stdout_closed = true;
		/* A handler's stdin and stdout are always its own pipes; its stderr
		 * is ours, so a parked 2 must survive exec. */
		int nfd = open("/dev/null", O_RDWR | (fd == STDERR_FILENO ? 0 : O_CLOEXEC));
		if (nfd != fd) {
			if (nfd >= 0)
				close(nfd);
			return -1;
		}
	}
	return 0;
}

/* After --help, --version or --dry-run, stdout is all the output: a full disk
 * or a closed pipe must show in the exit status. */
static int stdout_close(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int saved = errno;
		fclose(stdout);
		fprintf(stderr, "molecule-connect: cannot write to standard output: %s\n", strerror(saved));
		return MC_EXIT_ERROR;
	}
	if (fclose(stdout) != 0) {
		fprintf(stderr, "molecule-connect: cannot write to standard output: %s\n", strerror(errno));
		return MC_EXIT_ERROR;
	}
	return rc;
}

int main(int argc, char **argv)
{
	bool stdout_closed = false;
	if (standard_fds_open(&stdout_closed) != 0)
		return MC_EXIT_ERROR;
	/* A dead reader shows as EPIPE on the write, where it can be handled. */
	signal(SIGPIPE, SIG_IGN);

	struct settings s;
	enum parse_result parsed = options_parse(argc, argv, &s);
	s.stdout_closed = stdout_closed;
	if (parsed != PARSE_GO_ON) {
		settings_free(&s);
		return parsed == PARSE_DONE ? stdout_close(MC_EXIT_OK) : MC_EXIT_USAGE;
	}

	log_init(s.verbosity, s.log_json);
	if (s.token)
		log_add_secret(s.token);
	if (s.token_source && strcmp(s.token_source, "option") == 0)
		log_warn("--token is visible to other users in the process list until it is "
			 "read; prefer MOLECULE_WORKSPACE_TOKEN or --token-file");

	if (s.dry_run) {
		options_print(&s);
		settings_free(&s);
		return stdout_close(MC_EXIT_OK);
	}
	int rc = s.send ? send_run(&s) : loop_run(&s);
	settings_free(&s);
	return rc;
}
