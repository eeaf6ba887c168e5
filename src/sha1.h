/* sha1.h: SHA-1 (FIPS 180-4), for name-based UUIDs and for a token's fingerprint; no secret is ever derived from it. */
#ifndef MC_SHA1_H
#define MC_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define SHA1_LEN 20
#define SHA1_HEX_LEN (2 * SHA1_LEN)

struct sha1 {
	uint32_t h[5];
	uint64_t bytes;          /* message length so far */
	unsigned char block[64];
	size_t used;             /* bytes waiting in block */
};

void sha1_init(struct sha1 *c);
void sha1_update(struct sha1 *c, const void *data, size_t len);
void sha1_final(struct sha1 *c, unsigned char out[SHA1_LEN]);
/* The digest of data in one call. */
void sha1_digest(const void *data, size_t len, unsigned char out[SHA1_LEN]);
/* The digest as 40 lower-case hex digits and a NUL. */
void sha1_hex(const void *data, size_t len, char out[SHA1_HEX_LEN + 1]);

#endif
