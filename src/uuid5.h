/* uuid5.h: name-based UUIDs (RFC 4122 version 5) and the SHA-1 they are made from. */
#ifndef MC_UUID5_H
#define MC_UUID5_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SHA1_LEN 20

/* The SHA-1 digest of data[0..n). */
void sha1(const void *data, size_t n, uint8_t out[SHA1_LEN]);
/* The version 5 UUID of name[0..n) in namespace ns (a canonical UUID), lower case,
 * with its NUL, into out. The same namespace and name always give the same UUID.
 * -1 when ns is not a UUID. */
int uuid5(const char *ns, const char *name, size_t n, char out[UUID_LEN + 1]);

#endif
