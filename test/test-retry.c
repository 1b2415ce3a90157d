/*
 * test-retry.c - backoff bounds: exponential growth, the cap, full jitter.
 */
#include <stdint.h>

#include "retry.h"
#include "test.h"

TEST(retry_delay_bounds) {
  /* With the largest random value the delay is the cap itself. */
  uint64_t top[] = { 100, 200, 400, 800, 1600, 3200, 5000, 5000 };
  for (int n = 1; n <= 8; n++) {
    int64_t cap = (int64_t)top[n - 1];
    ASSERT_EQ_INT(eddy_retry_delay(100, 5000, n, (uint64_t)cap), cap);
    ASSERT_EQ_INT(eddy_retry_delay(100, 5000, n, 0), 0);
    ASSERT(eddy_retry_delay(100, 5000, n, UINT64_MAX) <= cap);
  }
}

TEST(retry_delay_huge_attempts) {
  ASSERT(eddy_retry_delay(1000, 30000, 1000, UINT64_MAX) <= 30000);
  ASSERT_EQ_INT(eddy_retry_delay(0, 30000, 3, 12345), 0);
}
