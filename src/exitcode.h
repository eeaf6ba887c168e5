/* exitcode.h: the exit statuses of the program, one named list. */
#ifndef MC_EXITCODE_H
#define MC_EXITCODE_H

/* What the process returns; the man page's EXIT STATUS lists the same. A
 * co-process that keeps failing passes on its own non-zero exit status. */
enum exit_code {
	MC_EXIT_OK = 0,           /* a clean stop: signal, end of input, --once, --max-messages */
	MC_EXIT_ERROR = 1,        /* a runtime error: refused at start, state unusable, libcurl */
	MC_EXIT_USAGE = 2,        /* a bad option, value or configuration */
	MC_EXIT_REMOVED = 3,      /* the workspace was removed on the platform */
	MC_EXIT_CANNOT_RUN = 126, /* the handler exists but cannot be run */
	MC_EXIT_NOT_FOUND = 127,  /* the handler cannot be started at all */
};

#endif
