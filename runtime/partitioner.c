/*
 * partitioner.c - Kafka's default partitioner for keyed messages.
 *
 * The hash is murmur2 exactly as Kafka's Java client computes it
 * (org.apache.kafka.common.utils.Utils.murmur2).  Java does it in signed
 * 32-bit ints with wrap-around; here everything is uint32_t, whose arithmetic
 * wraps by definition, so the bits are the same and there is no signed
 * overflow for UBSan to find.
 */
#include "partitioner.h"

#include "errors.h"

#define MURMUR2_SEED 0x9747b28cu
#define MURMUR2_M    0x5bd1e995u
#define MURMUR2_R    24

/* Kafka's murmur2 of len bytes at data, as the same 32 bits Java returns.
 * data may be NULL when len is 0.  Java mixes the length in as an int; keys
 * longer than 4 GiB cannot exist there, and here their length is mixed in
 * modulo 2^32.  Never fails, allocates nothing, is thread-safe. */
uint32_t eddy_murmur2(const void *data, size_t len) {
  const unsigned char *p = data;
  uint32_t h = MURMUR2_SEED ^ (uint32_t)len;
  size_t blocks = len / 4;

  for (size_t i = 0; i < blocks; i++, p += 4) {
    /* Assembled byte by byte: little-endian whatever the host, and no
     * unaligned loads. */
    uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                 (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    k *= MURMUR2_M;
    k ^= k >> MURMUR2_R;
    k *= MURMUR2_M;
    h *= MURMUR2_M;
    h ^= k;
  }

  /* The tail, in Java's order 3, 2, 1; each case falls into the next. */
  switch (len & 3) {
  case 3:
    h ^= (uint32_t)p[2] << 16;
    /* fall through */
  case 2:
    h ^= (uint32_t)p[1] << 8;
    /* fall through */
  case 1:
    h ^= (uint32_t)p[0];
    h *= MURMUR2_M;
  }

  h ^= h >> 13;
  h *= MURMUR2_M;
  h ^= h >> 15;
  return h;
}

/* The partition, in [0, partitions), that Kafka's Java producer picks for a
 * message with this key: (murmur2(key) & 0x7fffffff) % partitions.  key may
 * be NULL when len is 0 (the empty key, which is a key like any other).
 * partitions < 1 is the caller's bug (the header requires >= 1): it returns
 * EDDY_EINVAL instead of dividing by zero. */
int eddy_partition_for_key(const void *key, size_t len, int partitions) {
  if (partitions < 1)
    return EDDY_EINVAL;
  /* Clearing the sign bit (not abs()) is what Kafka does: abs() would send
   * INT_MIN and its neighbours elsewhere. */
  uint32_t positive = eddy_murmur2(key, len) & 0x7fffffffu;
  return (int)(positive % (uint32_t)partitions);
}
