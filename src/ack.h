/* ack.h: acknowledging done rows to the platform (POST .../activity/ack) after each save that moved the done seq. */
#ifndef MC_ACK_H
#define MC_ACK_H

#include <stdbool.h>
#include <stdint.h>

struct bridge;
struct http_req;

/* The rule. After a save, the highest seq below which everything is done is
 * acknowledged when it moved past what the platform has. One ack at a time: a
 * value saved meanwhile is sent when the one in flight succeeds (the latest
 * wins); a failed ack is tried again at the next save; a 404 means a platform
 * without acks, and nothing more is sent this run. The ack is a hint for
 * pruning: the state file keeps the cursor either way. */
struct acker {
	struct http_req *req;    /* the ack in flight, or NULL */
	int64_t sent;            /* its value */
	int64_t acked;           /* the platform has this one (0: none yet) */
	int64_t want;            /* the latest saved value */
	bool off;                /* 404: the platform has no acks */
};

/* A save succeeded holding seq (-1: none known). */
void ack_saved(struct bridge *b, int64_t seq);
/* An ack is in flight. */
bool ack_busy(const struct bridge *b);

#endif
