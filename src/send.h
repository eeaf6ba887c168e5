/* send.h: --send: the {"to":...} lines of standard input posted as new messages, then exit. */
#ifndef MC_SEND_H
#define MC_SEND_H

struct settings;

/* Reads standard input to its end, posts each new message (to a peer, or to
 * the canvas), retrying within --drain-timeout, and returns the exit status:
 * 0 every line posted; 1 some could not be (each named on stderr); 2 some line
 * was not a new message (each named; the others still go), no token, or an org
 * id the platform refuses. Needs neither the state lock nor registration, so
 * it runs beside a bridge for the same workspace. */
int send_run(struct settings *s);

#endif
