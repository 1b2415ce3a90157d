/*
 * kmock.c - a librdkafka mock cluster driven from standard input, for the
 * specs of eddy on Kafka under faults a real broker cannot easily give
 * (spec/kafka_mock_spec.lua).
 *
 *   kmock [BROKERS]
 *
 * Starts a mock cluster of BROKERS brokers (default 1, ids 1..BROKERS) on
 * 127.0.0.1, prints its bootstrap servers as the first line of standard
 * output, then reads one command a line and answers each with one line:
 * "ok" (with a value for `pending`) or "error: WHY".  At the end of its
 * input it destroys the cluster and exits 0.  Exit status 1 when the
 * cluster cannot start, 2 on a bad argument.
 *
 *   topic NAME PARTITIONS [REPLICAS]   create a topic (1 replica unless told)
 *   errors API COUNT ERR...            the next COUNT requests of API (its
 *                                      Kafka ApiKey: Produce 0, Fetch 1,
 *                                      OffsetCommit 8, JoinGroup 11,
 *                                      Heartbeat 12 ...), to any broker,
 *                                      fail with the ERR codes in order
 *   broker-errors ID API COUNT ERR...  the same, on broker ID only; an ERR
 *                                      written CODE:MS also delays that
 *                                      answer by MS (CODE 0: a slow answer)
 *   pending ID API                     "ok N": how many of broker ID's
 *                                      injected errors for API are left
 *   clear API                          drop the errors still queued for API
 *   down ID / up ID                    broker ID refuses connections (and
 *                                      drops those it has) / takes them again
 *   rtt ID MS                          broker ID answers MS later
 *   leader TOPIC PARTITION ID          move a partition's leader to broker ID
 *   coordinator TYPE KEY ID            the coordinator of group (or
 *                                      transaction) KEY is broker ID
 *   topic-error TOPIC ERR              metadata requests for TOPIC give ERR
 *                                      (0 clears it)
 *
 * Error codes are Kafka's numbers (NOT_LEADER_OR_FOLLOWER 6,
 * REQUEST_TIMED_OUT 7, ...), as librdkafka's rd_kafka_resp_err_t has them.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_WORDS 64            /* error codes in one command */
#define MAX_LINE_WORDS (MAX_WORDS + 4)

/* The mock cluster's own log lines go to standard error with a prefix, so
 * a spec's failure message shows them apart from eddy's.  The owning
 * client's warning that it has no bootstrap servers is expected: dropped. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  (void)level;
  if (strcmp(fac, "CONFWARN") == 0) return;
  fprintf(stderr, "kmock: %s: %s\n", fac, buf);
}

/* Parses s as a whole decimal number within [lo, hi]; 0 on success. */
static int number(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

/* Splits line into at most max words separated by blanks (in place).
 * Returns the count, or -1 when there are more than max. */
static int split(char *line, char **words, int max) {
  int n = 0;
  for (char *w = strtok(line, " \t\r\n"); w; w = strtok(NULL, " \t\r\n")) {
    if (n == max) return -1;
    words[n++] = w;
  }
  return n;
}

/* Reads the error codes words[0..count-1] into errs, and when rtts is not
 * NULL the delays written after a colon (CODE:MS, 0 when absent) into
 * rtts.  0 on success, else -1 with why written. */
static int error_codes(char **words, int count, rd_kafka_resp_err_t *errs, int *rtts,
                       char *why, size_t whylen) {
  for (int i = 0; i < count; i++) {
    long v, ms = 0;
    char *colon = rtts ? strchr(words[i], ':') : NULL;
    if (colon) *colon = 0;
    if (number(words[i], -200, 32767, &v) != 0 ||
        (colon && number(colon + 1, 0, 600000, &ms) != 0)) {
      if (colon) *colon = ':';
      snprintf(why, whylen, "'%s' is not %s", words[i],
               rtts ? "an error code or CODE:MS" : "an error code");
      return -1;
    }
    errs[i] = (rd_kafka_resp_err_t)v;
    if (rtts) rtts[i] = (int)ms;
  }
  return 0;
}

/* Runs one command (its words).  Returns 0 and writes the answer's value
 * (or "") to val, or -1 and writes why to val. */
static int run(rd_kafka_mock_cluster_t *mc, char **w, int n, char *val, size_t vlen) {
  long a, b, c;
  rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_resp_err_t errs[MAX_WORDS];
  int rtts[MAX_WORDS];
  val[0] = 0;
  if (n == 0) {
    snprintf(val, vlen, "empty command");
    return -1;
  }
  const char *cmd = w[0];
  if (strcmp(cmd, "topic") == 0 && (n == 3 || n == 4)) {
    if (number(w[2], 1, 100000, &a) != 0 || (n == 4 && number(w[3], 1, 100, &b) != 0))
      goto usage;
    e = rd_kafka_mock_topic_create(mc, w[1], (int)a, n == 4 ? (int)b : 1);
  } else if (strcmp(cmd, "errors") == 0 && n >= 3) {
    if (number(w[1], 0, 32767, &a) != 0 || number(w[2], 1, MAX_WORDS, &b) != 0 ||
        n != 3 + b)
      goto usage;
    if (error_codes(w + 3, (int)b, errs, NULL, val, vlen) != 0) return -1;
    rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)b, errs);
  } else if (strcmp(cmd, "broker-errors") == 0 && n >= 4) {
    if (number(w[1], 0, INT_MAX, &c) != 0 || number(w[2], 0, 32767, &a) != 0 ||
        number(w[3], 1, MAX_WORDS, &b) != 0 || n != 4 + b)
      goto usage;
    if (error_codes(w + 4, (int)b, errs, rtts, val, vlen) != 0) return -1;
    /* One at a time: the call takes its pairs as variable arguments, and
     * each call appends to the broker's stack, so the order holds. */
    for (long i = 0; i < b && !e; i++)
      e = rd_kafka_mock_broker_push_request_error_rtts(mc, (int32_t)c, (int16_t)a, 1,
                                                       errs[i], rtts[i]);
  } else if (strcmp(cmd, "pending") == 0 && n == 3) {
    size_t cnt = 0;
    if (number(w[1], 0, INT_MAX, &c) != 0 || number(w[2], 0, 32767, &a) != 0) goto usage;
    e = rd_kafka_mock_broker_error_stack_cnt(mc, (int32_t)c, (int16_t)a, &cnt);
    if (!e) snprintf(val, vlen, "%zu", cnt);
  } else if (strcmp(cmd, "clear") == 0 && n == 2) {
    if (number(w[1], 0, 32767, &a) != 0) goto usage;
    rd_kafka_mock_clear_request_errors(mc, (int16_t)a);
  } else if ((strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0) && n == 2) {
    if (number(w[1], 0, INT_MAX, &c) != 0) goto usage;
    e = cmd[0] == 'd' ? rd_kafka_mock_broker_set_down(mc, (int32_t)c)
                      : rd_kafka_mock_broker_set_up(mc, (int32_t)c);
  } else if (strcmp(cmd, "rtt") == 0 && n == 3) {
    if (number(w[1], 0, INT_MAX, &c) != 0 || number(w[2], 0, INT_MAX, &a) != 0) goto usage;
    e = rd_kafka_mock_broker_set_rtt(mc, (int32_t)c, (int)a);
  } else if (strcmp(cmd, "leader") == 0 && n == 4) {
    if (number(w[2], 0, INT_MAX, &a) != 0 || number(w[3], -1, INT_MAX, &c) != 0) goto usage;
    e = rd_kafka_mock_partition_set_leader(mc, w[1], (int32_t)a, (int32_t)c);
  } else if (strcmp(cmd, "coordinator") == 0 && n == 4) {
    if (number(w[3], 0, INT_MAX, &c) != 0) goto usage;
    e = rd_kafka_mock_coordinator_set(mc, w[1], w[2], (int32_t)c);
  } else if (strcmp(cmd, "topic-error") == 0 && n == 3) {
    if (error_codes(w + 2, 1, errs, NULL, val, vlen) != 0) return -1;
    rd_kafka_mock_topic_set_error(mc, w[1], errs[0]);
  } else {
    goto usage;
  }
  if (e) {
    snprintf(val, vlen, "%s: %s", cmd, rd_kafka_err2str(e));
    return -1;
  }
  return 0;
usage:
  snprintf(val, vlen, "bad command '%s' (or its arguments)", cmd);
  return -1;
}

int main(int argc, char **argv) {
  long brokers = 1;
  if (argc > 2 || (argc == 2 && number(argv[1], 1, 16, &brokers) != 0)) {
    fprintf(stderr, "usage: kmock [BROKERS (1-16)]\n");
    return 2;
  }
  /* The cluster needs a client to own it: a producer with no bootstrap
   * servers, which never connects anywhere itself. */
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, on_log);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "kmock: cannot make a client: %s\n", err);
    return 1;
  }
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
  if (!mc) {
    fprintf(stderr, "kmock: cannot start a mock cluster\n");
    rd_kafka_destroy(rk);
    return 1;
  }
  printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
  fflush(stdout);

  char line[4096];
  char *words[MAX_LINE_WORDS];
  char val[512];
  while (fgets(line, sizeof line, stdin)) {
    int n = split(line, words, MAX_LINE_WORDS);
    if (n < 0) {
      printf("error: too many words\n");
    } else if (run(mc, words, n, val, sizeof val) == 0) {
      if (val[0]) printf("ok %s\n", val);
      else printf("ok\n");
    } else {
      printf("error: %s\n", val);
    }
    fflush(stdout);
  }
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(rk);
  return 0;
}
