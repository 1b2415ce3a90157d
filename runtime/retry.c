#include "retry.h"

int64_t eddy_retry_delay(int64_t base_ms, int64_t max_ms, int failures,
                         uint64_t rnd) {
  if (base_ms <= 0) return 0;
  int64_t cap = base_ms;
  for (int i = 1; i < failures && cap < max_ms; i++) {
    if (cap > INT64_MAX / 2) { cap = max_ms; break; }
    cap *= 2;
  }
  if (cap > max_ms) cap = max_ms;
  return (int64_t)(rnd % ((uint64_t)cap + 1));
}
