/*
 * test-list.h - every C test, in the order the runner runs them.
 *
 * One line per TEST(name) defined in a test/test-<concept>.c file.  A test
 * listed here but not defined fails the link; a test defined but not listed
 * never runs, so add the line in the same change as the test.
 */
#ifndef EDDY_TEST_LIST_H
#define EDDY_TEST_LIST_H

#define TEST_LIST(X)                                                        \
  /* test-partitioner.c */                                                  \
  X(partitioner_murmur2_kafka_vectors)                                      \
  X(partitioner_murmur2_tail_lengths)                                       \
  X(partitioner_murmur2_unaligned)                                          \
  X(partitioner_murmur2_empty_key)                                          \
  X(partitioner_partition_vectors)                                          \
  X(partitioner_single_partition)                                           \
  X(partitioner_partition_in_range)                                         \
  /* test-uuid.c */                                                         \
  X(uuid_v7_format)                                                         \
  X(uuid_v7_strictly_increasing)                                            \
  X(uuid_v7_threads_unique)                                                 \
  X(uuid_v7_fork_child_differs)                                             \
  X(uuid_v7_time_is_now)                                                    \
  X(uuid_v7_time_rfc_vector)                                                \
  X(uuid_v7_time_rejects_non_v7)                                            \
  X(uuid_valid_accepts_either_case)                                         \
  X(uuid_valid_rejects_malformed)                                           \
  /* test-units.c */                                                        \
  X(units_durations)                                                        \
  X(units_durations_rejected)                                               \
  X(units_sizes)                                                            \
  X(units_sizes_rejected)                                                   \
  X(units_ints)                                                             \
  /* test-headers.c */                                                      \
  X(headers_round_trip)                                                     \
  X(headers_empty)                                                          \
  X(headers_malformed)                                                      \
  X(headers_trace_id)                                                       \
  /* test-buf.c */                                                          \
  X(buf_grows)                                                              \
  X(buf_json_escapes)                                                       \
  X(buf_utf8_validation)                                                    \
  X(buf_base64)                                                             \
  /* test-retry.c */                                                        \
  X(retry_delay_bounds)                                                     \
  X(retry_delay_huge_attempts)                                              \
  /* test-ljson.c */                                                        \
  X(ljson_numbers_exact)                                                    \
  X(ljson_integers_are_integers)                                            \
  X(ljson_strings)                                                          \
  X(ljson_containers)                                                       \
  X(ljson_depth_limited)                                                    \
  X(ljson_encode_refuses)                                                   \
  X(ljson_negative_zero)                                                    \
  X(ljson_float_keys)                                                       \
  X(ljson_key_collision)                                                    \
  /* test-http.c */                                                         \
  X(http_parses_requests)                                                   \
  X(http_refuses_malformed)                                                 \
  X(http_limits)                                                            \
  X(http_parts_of_a_good_request)                                           \
  X(http_reasons)                                                           \
  /* test-lpattern.c */                                                     \
  X(lpattern_same_as_lua)                                                   \
  X(lpattern_fixed_cases)                                                   \
  X(lpattern_counts_backtracking)                                           \
  X(lpattern_plain_find_is_linear)

#endif
