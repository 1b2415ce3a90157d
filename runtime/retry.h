/*
 * retry.h - when a failed message is tried again.
 *
 * Exponential backoff with full jitter: before attempt n+1 (after n
 * failures) eddy waits a uniformly random time in [0, min(max, base *
 * 2^(n-1))].  Full jitter spreads the retries of many failing keys instead
 * of bunching them at the same instants.
 */
#ifndef EDDY_RETRY_H
#define EDDY_RETRY_H

#include <stdint.h>

/* The delay in ms after `failures` failures (>= 1).  rnd is a random
 * 64-bit value. */
int64_t eddy_retry_delay(int64_t base_ms, int64_t max_ms, int failures,
                         uint64_t rnd);

#endif
