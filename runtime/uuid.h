/*
 * uuid.h - UUIDv7 message ids (RFC 9562).
 *
 * A UUIDv7 starts with a 48-bit Unix time in milliseconds, so ids made later
 * sort later both as bytes and as their lower-case text: the dedupe index
 * they land in grows at its right edge instead of being written at random.
 */
#ifndef EDDY_UUID_H
#define EDDY_UUID_H

#include <stddef.h>
#include <stdint.h>

#define EDDY_UUID_STRLEN 36   /* without the terminating NUL */

/* Fills out[37] with a new UUIDv7 in canonical lower-case text
 * (xxxxxxxx-xxxx-7xxx-yxxx-xxxxxxxxxxxx).  Ids made by one process are
 * strictly increasing even within one millisecond (a 12-bit counter in
 * rand_a, reseeded each millisecond; on overflow the timestamp is advanced).
 * Thread-safe. Randomness comes from getrandom(2). */
void eddy_uuid_v7(char out[EDDY_UUID_STRLEN + 1]);

/* The Unix time in milliseconds stored in a UUIDv7 text id, or -1 when s is
 * not a canonical UUID text of version 7. */
int64_t eddy_uuid_v7_time(const char *s);

/* 1 when s (of length len) is a UUID in canonical 8-4-4-4-12 hex text form
 * (either case), 0 otherwise. */
int eddy_uuid_valid(const char *s, size_t len);

#endif
