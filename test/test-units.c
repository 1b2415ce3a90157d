/*
 * test-units.c - durations, sizes and whole numbers as users write them.
 */
#include <stdint.h>

#include "test.h"
#include "units.h"

TEST(units_durations) {
  int64_t v;
  ASSERT_EQ_INT(eddy_parse_duration_ms("250", &v), 0); ASSERT_EQ_INT(v, 250);
  ASSERT_EQ_INT(eddy_parse_duration_ms("250ms", &v), 0); ASSERT_EQ_INT(v, 250);
  ASSERT_EQ_INT(eddy_parse_duration_ms("30s", &v), 0); ASSERT_EQ_INT(v, 30000);
  ASSERT_EQ_INT(eddy_parse_duration_ms("15m", &v), 0); ASSERT_EQ_INT(v, 900000);
  ASSERT_EQ_INT(eddy_parse_duration_ms("12h", &v), 0); ASSERT_EQ_INT(v, 43200000);
  ASSERT_EQ_INT(eddy_parse_duration_ms("7d", &v), 0); ASSERT_EQ_INT(v, 604800000);
  ASSERT_EQ_INT(eddy_parse_duration_ms("0s", &v), 0); ASSERT_EQ_INT(v, 0);
}

TEST(units_durations_rejected) {
  int64_t v = 42;
  const char *bad[] = { "", "s", "-1s", "1.5s", "10 s", "10x", "1sec",
                        "99999999999999999999", "9223372036854775807d", NULL };
  for (int i = 0; bad[i]; i++) ASSERT_EQ_INT(eddy_parse_duration_ms(bad[i], &v), -1);
  ASSERT_EQ_INT(eddy_parse_duration_ms(NULL, &v), -1);
  ASSERT_EQ_INT(v, 42);
}

TEST(units_sizes) {
  int64_t v;
  ASSERT_EQ_INT(eddy_parse_size("1048576", &v), 0); ASSERT_EQ_INT(v, 1048576);
  ASSERT_EQ_INT(eddy_parse_size("10B", &v), 0); ASSERT_EQ_INT(v, 10);
  ASSERT_EQ_INT(eddy_parse_size("2KB", &v), 0); ASSERT_EQ_INT(v, 2000);
  ASSERT_EQ_INT(eddy_parse_size("2kib", &v), 0); ASSERT_EQ_INT(v, 2048);
  ASSERT_EQ_INT(eddy_parse_size("1MiB", &v), 0); ASSERT_EQ_INT(v, 1048576);
  ASSERT_EQ_INT(eddy_parse_size("1MB", &v), 0); ASSERT_EQ_INT(v, 1000000);
  ASSERT_EQ_INT(eddy_parse_size("3GiB", &v), 0); ASSERT_EQ_INT(v, 3221225472);
  ASSERT_EQ_INT(eddy_parse_size("1G", &v), 0); ASSERT_EQ_INT(v, 1073741824);
}

TEST(units_sizes_rejected) {
  int64_t v;
  const char *bad[] = { "", "MiB", "-1", "1.5MiB", "1 MiB", "1TiB", "1Mi",
                        "9223372036854775807GiB", NULL };
  for (int i = 0; bad[i]; i++) ASSERT_EQ_INT(eddy_parse_size(bad[i], &v), -1);
}

TEST(units_ints) {
  int64_t v;
  ASSERT_EQ_INT(eddy_parse_int("0", 0, 10, &v), 0); ASSERT_EQ_INT(v, 0);
  ASSERT_EQ_INT(eddy_parse_int("-5", -10, 10, &v), 0); ASSERT_EQ_INT(v, -5);
  ASSERT_EQ_INT(eddy_parse_int("10", 0, 10, &v), 0); ASSERT_EQ_INT(v, 10);
  ASSERT_EQ_INT(eddy_parse_int("11", 0, 10, &v), -1);
  ASSERT_EQ_INT(eddy_parse_int("abc", 0, 10, &v), -1);
  ASSERT_EQ_INT(eddy_parse_int("1x", 0, 10, &v), -1);
  ASSERT_EQ_INT(eddy_parse_int("", 0, 10, &v), -1);
  ASSERT_EQ_INT(eddy_parse_int("-", -10, 10, &v), -1);
}
