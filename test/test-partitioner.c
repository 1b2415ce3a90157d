/*
 * test-partitioner.c - murmur2 and the key-to-partition map against the
 * values Kafka's Java client produces.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "partitioner.h"
#include "test.h"

/* murmur2 of a C string, as Java's signed int. */
static int32_t m2(const char *s) { return (int32_t)eddy_murmur2(s, strlen(s)); }

static int part(const char *s, int partitions) {
  return eddy_partition_for_key(s, strlen(s), partitions);
}

/* Kafka's own vectors (clients/.../utils/UtilsTest.java, testMurmur2). */
TEST(partitioner_murmur2_kafka_vectors) {
  ASSERT_EQ_INT(m2("21"), -973932308);
  ASSERT_EQ_INT(m2("foobar"), -790332482);
  ASSERT_EQ_INT(m2("a-little-bit-long-string"), -985981536);
  ASSERT_EQ_INT(m2("a-little-bit-longer-string"), -1486304829);
  ASSERT_EQ_INT(m2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
                -58897971);
  ASSERT_EQ_INT(m2("abc"), 479470107);
}

/* Kafka's vectors have lengths 2, 3, 6, 24, 26, 48: none with one tail
 * byte.  These are Java-client values published by librdkafka
 * (src/rdmurmur2.c, java_murmur2_results) and cover every length mod 4. */
TEST(partitioner_murmur2_tail_lengths) {
  ASSERT_EQ_INT(m2("4"), (int32_t)0x5a4b5ca1);     /* 1 tail byte */
  ASSERT_EQ_INT(m2("34"), (int32_t)0x873930da);    /* 2 */
  ASSERT_EQ_INT(m2("234"), (int32_t)0xe7c009ca);   /* 3 */
  ASSERT_EQ_INT(m2("1234"), (int32_t)0x9fc97b14);  /* 0, one block */
  ASSERT_EQ_INT(m2("kafka"), (int32_t)0xd067cf64); /* block + 1 */
  ASSERT_EQ_INT(m2("giberish123456789"), (int32_t)0x8f552b0c); /* 4 + 1 */
}

/* Keys that do not start on a 4-byte boundary hash the same as any copy
 * (librdkafka's "unaligned" vectors: one string entered at offsets 0-3). */
TEST(partitioner_murmur2_unaligned) {
  static const char s[] = "PreAmbleWillBeRemoved,ThePrePartThatIs";
  static const uint32_t want[4] = {0x78424f1c, 0x4a62b377, 0xe0e4e09e,
                                   0x62b8b43f};
  for (size_t off = 0; off < 4; off++)
    ASSERT_EQ_INT(eddy_murmur2(s + off, strlen(s) - off), want[off]);
}

/* Zero bytes: h = seed ^ 0 = 0x9747b28c, no blocks, no tail, then only the
 * final mixes.  The Java client gives 0x106e08d9 = 275646681 (librdkafka
 * pins the same value for ""). */
TEST(partitioner_murmur2_empty_key) {
  ASSERT_EQ_INT(eddy_murmur2("", 0), 275646681);
  ASSERT_EQ_INT(eddy_murmur2(NULL, 0), 275646681);
  /* 275646681 = 4 * 68911670 + 1 */
  ASSERT_EQ_INT(eddy_partition_for_key(NULL, 0, 4), 1);
  ASSERT_EQ_INT(eddy_partition_for_key("", 0, 4), 1);
}

/* Each expected partition worked by hand from Kafka's murmur2 values: for a
 * negative h, h & 0x7fffffff = h + 2^31 = h + 2147483648. */
TEST(partitioner_partition_vectors) {
  /* -973932308 + 2147483648 = 1173551340 = 7 * 167650191 + 3 */
  ASSERT_EQ_INT(part("21", 7), 3);
  /* -790332482 + 2147483648 = 1357151166 = 4 * 339287791 + 2 */
  ASSERT_EQ_INT(part("foobar", 4), 2);
  /* -985981536 + 2147483648 = 1161502112 = 3 * 387167370 + 2 */
  ASSERT_EQ_INT(part("a-little-bit-long-string", 3), 2);
  /* -1486304829 + 2147483648 = 661178819 = 6 * 110196469 + 5 */
  ASSERT_EQ_INT(part("a-little-bit-longer-string", 6), 5);
  /* -58897971 + 2147483648 = 2088585677 = 10 * 208858567 + 7 */
  ASSERT_EQ_INT(part("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", 10),
                7);
  /* 479470107 is positive, kept as is: 479470107 = 6 * 79911684 + 3 */
  ASSERT_EQ_INT(part("abc", 6), 3);
  /* 0xd067cf64 = -798503068; + 2147483648 = 1348980580
   *            = 12 * 112415048 + 4 */
  ASSERT_EQ_INT(part("kafka", 12), 4);
}

TEST(partitioner_single_partition) {
  char key[64];
  for (int i = 0; i < 10000; i++) {
    int n = snprintf(key, sizeof key, "key-%d", i);
    /* lengths 0..n: every tail length, and the empty key */
    ASSERT_EQ_INT(eddy_partition_for_key(key, (size_t)(n - i % (n + 1)), 1),
                  0);
  }
}

TEST(partitioner_partition_in_range) {
  char key[64];
  int seen[7] = {0};
  for (int i = 0; i < 10000; i++) {
    int n = snprintf(key, sizeof key, "customer-%d", i);
    int p = eddy_partition_for_key(key, (size_t)n, 7);
    ASSERT(p >= 0 && p < 7);
    seen[p]++;
  }
  /* 10000 keys over 7 partitions: every partition gets some */
  for (int p = 0; p < 7; p++)
    ASSERT(seen[p] > 0);
  /* A partition count the header forbids is refused, not divided by. */
  ASSERT_EQ_INT(eddy_partition_for_key("k", 1, 0), EDDY_EINVAL);
  ASSERT_EQ_INT(eddy_partition_for_key("k", 1, -3), EDDY_EINVAL);
}
