/*
 * headers.h - message headers: ordered name/value pairs of bytes.
 *
 * Stored as one blob: for each header, a varint name length, the name, a
 * varint value length, the value.  Names may repeat; order is kept.  An empty
 * list is stored as NULL, not as an empty blob.
 */
#ifndef EDDY_HEADERS_H
#define EDDY_HEADERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_header {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} eddy_header;

/* Bytes needed to encode n headers. */
size_t eddy_headers_size(const eddy_header *h, size_t n);

/* Encodes n headers into out, which has eddy_headers_size(h, n) bytes.
 * Returns the number of bytes written. */
size_t eddy_headers_encode(const eddy_header *h, size_t n, unsigned char *out);

/* Iterates over an encoded blob: call with *pos = 0, then again while it
 * returns 1.  Returns 1 and fills *h (pointing into blob) for the next
 * header, 0 at the end, -1 when the blob is malformed. */
int eddy_headers_next(const void *blob, size_t len, size_t *pos, eddy_header *h);

/* The value of the last header called name, or NULL; *value_len is set
 * when found. */
const char *eddy_headers_get(const void *blob, size_t len, const char *name,
                             size_t *value_len);

/* The trace id of the W3C traceparent header among the encoded headers
 * ("00-<32 hex trace id>-<16 hex span id>-01"): its 32 hex digits and a NUL
 * copied into out, which is returned; NULL when there is no traceparent of
 * that shape, or its trace id is all zeros.  The same test as the one that
 * decides whether an emitted event keeps the trace (worker.c), so that a
 * log line names the trace its events carry. */
const char *eddy_headers_trace_id(const void *blob, size_t len, char out[33]);

#endif
