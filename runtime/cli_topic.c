/*
 * cli_topic.c - eddy topic create | list | alter | trim.
 */
#include "cli.h"
#include "buf.h"
#include "errors.h"
#include "kafka.h"
#include "log.h"
#include "units.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads --retention, --retention-bytes and --max-message-bytes into the
 * three values (left untouched when absent).  Returns 0 or an exit status. */
static int read_limits(const eddy_cli_args *a, int64_t *ret_ms,
                       int64_t *ret_bytes, int64_t *max_bytes) {
  const char *v;
  if ((v = eddy_cli_value(a, "retention"))) {
    if (strcmp(v, "forever") == 0) *ret_ms = -1;
    else if (eddy_parse_duration_ms(v, ret_ms) != 0)
      return eddy_cli_usage_error(a,
        "--retention expects a duration such as 7d, 12h, 30m or 'forever', got '%s'", v);
  }
  if ((v = eddy_cli_value(a, "retention-bytes"))) {
    if (strcmp(v, "unlimited") == 0) *ret_bytes = -1;
    else if (eddy_parse_size(v, ret_bytes) != 0)
      return eddy_cli_usage_error(a,
        "--retention-bytes expects a size such as 512MiB or 'unlimited', got '%s'", v);
  }
  if ((v = eddy_cli_value(a, "max-message-bytes"))) {
    if (eddy_parse_size(v, max_bytes) != 0)
      return eddy_cli_usage_error(a,
        "--max-message-bytes expects a size such as 1MiB, got '%s'", v);
  }
  return 0;
}

static const eddy_cli_opt create_opts[] = {
  { "partitions", 'p', "N", "number of partitions (default 1)" },
  { "retention", 0, "AGE", "delete messages older than AGE (e.g. 7d; default: forever)" },
  { "retention-bytes", 0, "SIZE", "keep at most SIZE bytes per partition (default: unlimited)" },
  { "max-message-bytes", 0, "SIZE", "largest key, value or headers accepted (default 1MiB)" },
  { "if-not-exists", 0, NULL, "succeed when the topic exists already" },
  EDDY_CLI_KAFKA_OPTS,
  { 0 }
};

static int run_create(const eddy_cli_args *a) {
  eddy_topic_config c;
  eddy_topic_config_init(&c);
  if (eddy_cli_value(a, "partitions")) {
    int64_t n;
    /* Checked before the store is opened (and created): a bad request
     * must leave nothing behind. */
    if (eddy_cli_int(a, "partitions", 1, EDDY_MAX_PARTITIONS, &n) != 0)
      return EDDY_EXIT_USAGE;
    c.partitions = (int)n;
  }
  int rc = read_limits(a, &c.retention_ms, &c.retention_bytes,
                       &c.max_message_bytes);
  if (rc) return rc;
  char why[256];
  if (eddy_topic_name_valid(a->pos[0], why, sizeof why) != 0)
    return eddy_cli_usage_error(a, "%s", why);
  eddy_kafka *k;
  if ((rc = eddy_cli_kafka(a, &k)) != 0) return rc;
  int created = 1;
  if (k) {
    rc = eddy_kafka_topic_create(k, a->pos[0], &c, eddy_cli_flag(a, "if-not-exists"), &created);
    if (rc) rc = eddy_cli_fail(a, "%s", eddy_kafka_errmsg(k));
    else
      printf(created ? "created topic '%s' with %d partition%s\n"
                     : "topic '%s' exists already\n", a->pos[0], c.partitions,
             c.partitions == 1 ? "" : "s");
    eddy_kafka_close(k);
    return rc;
  }
  eddy_store *s = eddy_cli_open(a, 1);
  if (!s) return EDDY_EXIT_FAIL;
  if (eddy_cli_flag(a, "if-not-exists"))
    rc = eddy_topic_ensure(s, a->pos[0], &c, &created);
  else
    rc = eddy_topic_create(s, a->pos[0], &c);
  if (rc) {
    rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  } else {
    printf(created ? "created topic '%s' with %d partition%s\n"
                   : "topic '%s' exists with %d or more partition%s\n",
           a->pos[0], c.partitions, c.partitions == 1 ? "" : "s");
  }
  eddy_store_close(s);
  return rc;
}

const eddy_cli_cmd eddy_cmd_topic_create = {
  "topic create", "NAME [--partitions N]", "create a topic", 
  "A topic name is 1 to 249 letters, digits, '.', '_' or '-'.  A topic has\n"
  "1 to 4096 partitions; keyed messages go to the partition Kafka's default\n"
  "partitioner would choose for the same key and partition count.\n",
  create_opts, 1, 1, run_create
};

struct list_ctx {
  eddy_store *s;
  int json;
  int rc;
  eddy_buf out;     /* one topic's line */
  eddy_buf all;     /* every line, printed once the listing is complete */
};

static void fmt_ms(char *b, size_t n, int64_t ms) {
  if (ms < 0) snprintf(b, n, "forever");
  else if (ms % 86400000 == 0) snprintf(b, n, "%" PRId64 "d", ms / 86400000);
  else if (ms % 3600000 == 0) snprintf(b, n, "%" PRId64 "h", ms / 3600000);
  else if (ms % 60000 == 0) snprintf(b, n, "%" PRId64 "m", ms / 60000);
  else if (ms % 1000 == 0) snprintf(b, n, "%" PRId64 "s", ms / 1000);
  else snprintf(b, n, "%" PRId64 "ms", ms);
}

static int list_one(void *ud, const eddy_topic_info *t) {
  struct list_ctx *c = ud;
  eddy_partition_info *p = calloc((size_t)t->config.partitions, sizeof *p);
  if (!p) return c->rc = -1;
  int rc = eddy_partitions_get(c->s, t, p);
  if (rc) { free(p); return c->rc = rc; }
  int64_t messages = 0;
  for (int i = 0; i < t->config.partitions; i++)
    messages += p[i].next_offset - p[i].log_start;
  eddy_buf *o = &c->out;
  eddy_buf_reset(o);
  if (c->json) {
    eddy_buf_puts(o, "{\"name\":");
    eddy_buf_json_str(o, t->name, strlen(t->name));
    eddy_buf_printf(o, ",\"partitions\":%d,\"messages\":%" PRId64
                    ",\"retention_ms\":%" PRId64 ",\"retention_bytes\":%" PRId64
                    ",\"max_message_bytes\":%" PRId64 ",\"offsets\":[",
                    t->config.partitions, messages, t->config.retention_ms,
                    t->config.retention_bytes, t->config.max_message_bytes);
    for (int i = 0; i < t->config.partitions; i++)
      eddy_buf_printf(o, "%s{\"partition\":%d,\"log_start\":%" PRId64
                      ",\"high_watermark\":%" PRId64 ",\"messages\":%" PRId64 "}",
                      i ? "," : "", i, p[i].log_start, p[i].next_offset,
                      p[i].next_offset - p[i].log_start);
    eddy_buf_puts(o, "]}\n");
  } else {
    char ret[32];
    fmt_ms(ret, sizeof ret, t->config.retention_ms);
    eddy_buf_printf(o, "%-24s %10d %10" PRId64 "  %-9s ", t->name,
                    t->config.partitions, messages, ret);
    for (int i = 0; i < t->config.partitions; i++)
      eddy_buf_printf(o, "%s%" PRId64, i ? "," : "", p[i].next_offset);
    eddy_buf_puts(o, "\n");
  }
  free(p);
  eddy_buf_add(&c->all, o->data, o->len);
  if (o->oom || c->all.oom)
    return c->rc = eddy_store_seterr(c->s, EDDY_ENOMEM, "out of memory");
  return 0;
}

/* A Kafka topic: its retention lives in the cluster's configs, not shown. */
static int list_kafka_one(void *ud, const char *name, int np, const int64_t *starts,
                          const int64_t *highs) {
  struct list_ctx *c = ud;
  int64_t messages = 0;
  for (int i = 0; i < np; i++) messages += highs[i] - starts[i];
  if (!c->json && !c->rc) {
    printf("%-24s %10s %10s  %-9s %s\n", "TOPIC", "PARTITIONS", "MESSAGES",
           "RETENTION", "HIGH-WATERMARKS");
    c->rc = 1;        /* the header is out (no error: rows follow) */
  }
  eddy_buf *o = &c->out;
  eddy_buf_reset(o);
  if (c->json) {
    eddy_buf_puts(o, "{\"name\":");
    eddy_buf_json_str(o, name, strlen(name));
    eddy_buf_printf(o, ",\"partitions\":%d,\"messages\":%" PRId64 ",\"offsets\":[", np,
                    messages);
    for (int i = 0; i < np; i++)
      eddy_buf_printf(o, "%s{\"partition\":%d,\"log_start\":%" PRId64
                      ",\"high_watermark\":%" PRId64 ",\"messages\":%" PRId64 "}",
                      i ? "," : "", i, starts[i], highs[i], highs[i] - starts[i]);
    eddy_buf_puts(o, "]}\n");
  } else {
    eddy_buf_printf(o, "%-24s %10d %10" PRId64 "  %-9s ", name, np, messages, "-");
    for (int i = 0; i < np; i++) eddy_buf_printf(o, "%s%" PRId64, i ? "," : "", highs[i]);
    eddy_buf_puts(o, "\n");
  }
  if (o->oom) return c->rc = EDDY_ENOMEM;
  fwrite(o->data, 1, o->len, stdout);
  return 0;
}

static int run_list(const eddy_cli_args *a) {
  eddy_kafka *k;
  int rc = eddy_cli_kafka(a, &k);
  if (rc) return rc;
  if (k) {
    /* The header comes with the first topic, so a cluster that cannot be
     * reached prints the error alone. */
    struct list_ctx c = { NULL, eddy_cli_flag(a, "json"), 0, EDDY_BUF_INIT, EDDY_BUF_INIT };
    rc = eddy_kafka_topic_foreach(k, list_kafka_one, &c);
    eddy_buf_free(&c.out);
    if (rc == 0 && !c.json && !c.rc)
      printf("%-24s %10s %10s  %-9s %s\n", "TOPIC", "PARTITIONS", "MESSAGES",
             "RETENTION", "HIGH-WATERMARKS");
    if (rc || c.rc == EDDY_ENOMEM)
      rc = eddy_cli_fail(a, "%s", rc ? eddy_kafka_errmsg(k) : "out of memory");
    eddy_kafka_close(k);
    return rc;
  }
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  /* Printed whole or not at all: a store that fails part-way (damaged)
   * gives its error alone. */
  struct list_ctx c = { s, eddy_cli_flag(a, "json"), 0, EDDY_BUF_INIT, EDDY_BUF_INIT };
  if (!c.json)
    eddy_buf_printf(&c.all, "%-24s %10s %10s  %-9s %s\n", "TOPIC", "PARTITIONS",
                    "MESSAGES", "RETENTION", "HIGH-WATERMARKS");
  rc = eddy_topic_foreach(s, list_one, &c);
  if (rc || c.rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  else if (c.all.len) fwrite(c.all.data, 1, c.all.len, stdout);
  eddy_buf_free(&c.out);
  eddy_buf_free(&c.all);
  eddy_store_close(s);
  return rc;
}

static const eddy_cli_opt list_opts[] = {
  { "json", 'j', NULL, "one JSON object per topic, with per-partition offsets" },
  EDDY_CLI_KAFKA_OPTS,
  { 0 }
};

const eddy_cli_cmd eddy_cmd_topic_list = {
  "topic list", "[--json]", "list topics with their partitions, message counts and high watermarks",
  "MESSAGES counts the messages still stored (retention removes old ones).\n"
  "HIGH-WATERMARKS lists, per partition, the offset the next message gets.\n",
  list_opts, 0, 0, run_list
};

static const eddy_cli_opt alter_opts[] = {
  { "retention", 0, "AGE", "delete messages older than AGE, or 'forever'" },
  { "retention-bytes", 0, "SIZE", "keep at most SIZE bytes per partition, or 'unlimited'" },
  { "max-message-bytes", 0, "SIZE", "largest key, value or headers accepted" },
  { 0 }
};

static int run_alter(const eddy_cli_args *a) {
  int64_t ret_ms = EDDY_KEEP, ret_bytes = EDDY_KEEP, max_bytes = EDDY_KEEP;
  int rc = read_limits(a, &ret_ms, &ret_bytes, &max_bytes);
  if (rc) return rc;
  eddy_store *s = eddy_cli_open(a, 0);
  if (!s) return EDDY_EXIT_FAIL;
  rc = eddy_topic_alter(s, a->pos[0], ret_ms, ret_bytes, max_bytes);
  if (rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  else printf("altered topic '%s'\n", a->pos[0]);
  eddy_store_close(s);
  return rc;
}

const eddy_cli_cmd eddy_cmd_topic_alter = {
  "topic alter", "NAME [--retention AGE] [--retention-bytes SIZE] [--max-message-bytes SIZE]",
  "change a topic's retention or message size limit", NULL, alter_opts, 1, 1,
  run_alter
};

static int run_trim(const eddy_cli_args *a) {
  eddy_store *s = eddy_cli_open(a, 0);
  if (!s) return EDDY_EXIT_FAIL;
  int64_t removed = 0;
  int rc = eddy_log_trim(s, a->npos ? a->pos[0] : NULL, eddy_now_ms(), &removed);
  if (rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  else printf("removed %" PRId64 " message%s\n", removed, removed == 1 ? "" : "s");
  eddy_store_close(s);
  return rc;
}

const eddy_cli_cmd eddy_cmd_topic_trim = {
  "topic trim", "[NAME]", "apply retention now (producers also apply it as they write)",
  NULL, (const eddy_cli_opt[]){ { 0 } }, 0, 1, run_trim
};
