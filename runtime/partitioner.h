/*
 * partitioner.h - which partition a message goes to.
 *
 * Keyed messages go where Kafka's default partitioner (the Java producer's)
 * puts them: (murmur2(key) & 0x7fffffff) % partitions, so that an app moved
 * from the embedded log to Kafka keeps its key-to-partition map.  An empty key
 * (zero bytes) is a key like any other; an absent key is not.
 */
#ifndef EDDY_PARTITIONER_H
#define EDDY_PARTITIONER_H

#include <stddef.h>
#include <stdint.h>

/* Kafka's murmur2 (seed 0x9747b28c) of len bytes at data, as the Java client
 * computes it, returned as the same 32 bits (cast to int32_t to compare with
 * Java's signed values). */
uint32_t eddy_murmur2(const void *data, size_t len);

/* The partition, in [0, partitions), of a message with this key.
 * partitions must be >= 1. */
int eddy_partition_for_key(const void *key, size_t len, int partitions);

#endif
