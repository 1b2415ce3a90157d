/*
 * cli_produce.c - eddy produce: one message from the command line, or one
 * per line of standard input, in batches of one transaction each.
 */
#include "cli.h"
#include "buf.h"
#include "errors.h"
#include "kafka.h"
#include "log.h"
#include "produce_line.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines per transaction: large enough that the commit's fsync is noise,
 * small enough that a batch's memory stays small. */
#define BATCH 1000
#define MAX_HEADERS 64

static const eddy_cli_opt produce_opts[] = {
  { "key", 'k', "K", "the message key (absent by default)" },
  { "key-separator", 'K', "SEP", "read 'KEY<SEP>VALUE' lines: each line's key comes before SEP" },
  { "header", 'H', "NAME=VALUE", "add a header (repeatable, order kept)" },
  { "type", 't', "T", "the event type (header eddy-type), which rules and sagas match" },
  { "version", 0, "N", "the event type's version (header eddy-version; needs --type)" },
  { "partition", 'p', "P", "write to partition P instead of letting the key choose" },
  { "id", 0, "ID", "the message id (default: a new UUIDv7; one message only)" },
  { "json", 'j', NULL, "print one JSON line per message: topic, partition, offset, id" },
  EDDY_CLI_KAFKA_OPTS,
  { 0 }
};

struct producer {
  const eddy_cli_args *a;
  eddy_store *s;
  eddy_kafka *k;                /* --broker: Kafka instead of s */
  const char *topic;
  eddy_topic_info t;
  int json;
  eddy_record recs[BATCH];
  char *lines[BATCH];
  int64_t line_no[BATCH];
  size_t n;
  eddy_produced out[BATCH];
  eddy_buf print;
  int64_t produced;
  int64_t fail_line;            /* the first line not written, -1: VALUE */
};

/* Writes the batch.  On Kafka a failed batch may be partly written, lines
 * after the failed one included: those written are printed (--json) and
 * counted, and fail_line is the first line not written. */
static int flush(struct producer *p) {
  if (p->n == 0) return 0;
  int rc = p->k ? eddy_kafka_produce(p->k, p->topic, p->recs, p->n, p->out)
                : eddy_log_produce(p->s, p->topic, p->recs, p->n, p->out);
  size_t written = 0;
  for (size_t i = 0; i < p->n; i++) {
    int ok = rc == 0 || (p->k && p->out[i].offset >= 0);
    if (ok) written++;
    else if (!p->fail_line) p->fail_line = p->line_no[i] ? p->line_no[i] : -1;
  }
  if (written && p->json) {
    eddy_buf *b = &p->print;
    eddy_buf_reset(b);
    for (size_t i = 0; i < p->n; i++) {
      if (rc != 0 && !(p->k && p->out[i].offset >= 0)) continue;
      eddy_buf_puts(b, "{\"topic\":");
      eddy_buf_json_str(b, p->topic, strlen(p->topic));
      eddy_buf_printf(b, ",\"partition\":%d,\"offset\":%" PRId64 ",\"id\":",
                      p->out[i].partition, p->out[i].offset);
      eddy_buf_json_str(b, p->out[i].id, strlen(p->out[i].id));
      eddy_buf_printf(b, ",\"timestamp\":%" PRId64 "}\n", p->out[i].timestamp);
    }
    if (!b->oom) fwrite(b->data, 1, b->len, stdout);
  }
  p->produced += (int64_t)written;
  for (size_t i = 0; i < p->n; i++) free(p->lines[i]);
  p->n = 0;
  return rc;
}

/* The message of the last failure. */
static const char *errmsg(const struct producer *p) {
  return p->k ? eddy_kafka_errmsg(p->k) : eddy_store_errmsg(p->s);
}

/* A failed flush, said in full: which line failed and how many were
 * written anyway.  The embedded log writes a batch in one transaction, so
 * every line before the batch is written and none of it, as for a line the
 * topic refuses; on Kafka, lines after the failed one may be written. */
static int flush_failed(struct producer *p) {
  if (p->fail_line <= 0) return eddy_cli_fail(p->a, "%s", errmsg(p));
  if (!p->k)
    return eddy_cli_fail(p->a, "line %" PRId64 ": %s (%" PRId64 " message%s before it "
                         "produced)", p->fail_line, errmsg(p), p->produced,
                         p->produced == 1 ? "" : "s");
  return eddy_cli_fail(p->a, "line %" PRId64 ": %s (%" PRId64 " message%s written, some "
                       "of them from later lines: Kafka writes partitions independently; "
                       "--json lists each one written)", p->fail_line, errmsg(p),
                       p->produced, p->produced == 1 ? "" : "s");
}

/* Checks what the store would refuse, so that a bad line stops the run
 * after every line before it was written, never in the middle of a batch. */
static int check_line(struct producer *p, const eddy_record *r, char *msg,
                      size_t msglen) {
  int64_t limit = p->t.config.max_message_bytes;
  size_t hsize = eddy_headers_size(r->headers, r->nheaders);
  const char *what = NULL;
  size_t size = 0;
  if ((int64_t)r->value_len > limit) { what = "value"; size = r->value_len; }
  else if (r->has_key && (int64_t)r->key_len > limit) { what = "key"; size = r->key_len; }
  else if ((int64_t)hsize > limit) { what = "headers"; size = hsize; }
  if (!what) return 0;
  snprintf(msg, msglen, "%s of %zu bytes is over the limit of %" PRId64
           " bytes of topic '%s'", what, size, limit, p->topic);
  return -1;
}

static int run_produce(const eddy_cli_args *a) {
  eddy_header headers[MAX_HEADERS];
  size_t nheaders = 0;
  const char *h;
  for (int i = 0; (h = eddy_cli_nth(a, "header", i)); i++) {
    const char *eq = strchr(h, '=');
    if (!eq)
      return eddy_cli_usage_error(a, "header '%s' has no '=' (use --header NAME=VALUE)", h);
    if (eq == h)
      return eddy_cli_usage_error(a, "header '%s' has an empty name", h);
    if (nheaders == MAX_HEADERS)
      return eddy_cli_usage_error(a, "too many headers (max %d)", MAX_HEADERS);
    headers[nheaders].name = h;
    headers[nheaders].name_len = (size_t)(eq - h);
    headers[nheaders].value = eq + 1;
    headers[nheaders].value_len = strlen(eq + 1);
    nheaders++;
  }
  const char *type = eddy_cli_value(a, "type");
  if (type) {
    if (!*type) return eddy_cli_usage_error(a, "--type is empty");
    if (nheaders == MAX_HEADERS)
      return eddy_cli_usage_error(a, "too many headers (max %d)", MAX_HEADERS);
    headers[nheaders++] = (eddy_header){ "eddy-type", 9, type, strlen(type) };
  }
  const char *version = eddy_cli_value(a, "version");
  if (version) {
    int64_t v;
    if (!type) return eddy_cli_usage_error(a, "--version needs --type");
    if (eddy_cli_int(a, "version", 1, INT32_MAX, &v) != 0) return EDDY_EXIT_USAGE;
    if (nheaders == MAX_HEADERS)
      return eddy_cli_usage_error(a, "too many headers (max %d)", MAX_HEADERS);
    headers[nheaders++] = (eddy_header){ "eddy-version", 12, version, strlen(version) };
  }
  int partition = -1;
  if (eddy_cli_value(a, "partition")) {
    int64_t v;
    if (eddy_cli_int(a, "partition", 0, EDDY_MAX_PARTITIONS - 1, &v) != 0)
      return EDDY_EXIT_USAGE;
    partition = (int)v;
  }
  const char *key = eddy_cli_value(a, "key");
  const char *sep = eddy_cli_value(a, "key-separator");
  const char *id = eddy_cli_value(a, "id");
  if (sep && !*sep)
    return eddy_cli_usage_error(a, "--key-separator must not be empty");
  if (sep && key)
    return eddy_cli_usage_error(a, "--key and --key-separator cannot be used together");
  if (id && a->npos < 2)
    return eddy_cli_usage_error(a, "--id needs a VALUE argument (one message)");
  if (sep && a->npos == 2)
    return eddy_cli_usage_error(a, "--key-separator applies to lines of standard input, not to VALUE");

  struct producer *p = calloc(1, sizeof *p);
  if (!p) return eddy_cli_fail(a, "out of memory");
  p->a = a;
  p->topic = a->pos[0];
  p->json = eddy_cli_flag(a, "json");
  int rc = eddy_cli_kafka(a, &p->k);
  if (rc) { free(p); return rc; }
  if (p->k) {
    /* Kafka checks sizes itself (message.max.bytes); 1 MiB here as on the
     * embedded log, so a bad line stops the run the same way. */
    eddy_topic_config_init(&p->t.config);
    if (eddy_kafka_topic_partitions(p->k, p->topic, &p->t.config.partitions) != 0) {
      rc = eddy_cli_fail(a, "%s", errmsg(p));
      goto done;
    }
  } else {
    p->s = eddy_cli_open(a, 0);
    if (!p->s) { free(p); return EDDY_EXIT_FAIL; }
    if (eddy_topic_get(p->s, p->topic, &p->t) != 0) {
      rc = eddy_cli_fail(a, "%s", errmsg(p));
      goto done;
    }
  }
  if (partition >= p->t.config.partitions) {
    rc = eddy_cli_fail(a, "topic '%s' has no partition %d (it has %d)",
                       p->topic, partition, p->t.config.partitions);
    goto done;
  }
  eddy_record base;
  memset(&base, 0, sizeof base);
  base.headers = nheaders ? headers : NULL;
  base.nheaders = nheaders;
  base.partition = partition;
  if (key) { base.key = key; base.key_len = strlen(key); base.has_key = 1; }

  if (a->npos == 2) {
    eddy_record r = base;
    r.value = a->pos[1];
    r.value_len = strlen(a->pos[1]);
    if (id) { r.id = id; r.id_len = strlen(id); }
    char msg[256];
    if (check_line(p, &r, msg, sizeof msg)) {
      rc = eddy_cli_fail(a, "%s", msg);
      goto done;
    }
    p->recs[0] = r;
    p->lines[0] = NULL;
    p->n = 1;
    if (flush(p) != 0) rc = flush_failed(p);
    goto done;
  }

  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int64_t line_no = 0;
  size_t seplen = sep ? strlen(sep) : 0;
  while ((len = getline(&line, &cap, stdin)) >= 0) {
    line_no++;
    eddy_produce_line pl;
    int split = eddy_produce_line_split(line, (size_t)len, sep, seplen, &pl);
    eddy_record r = base;
    r.value = pl.value;
    r.value_len = pl.value_len;
    if (sep) {
      if (split != 0) {
        if (flush(p) != 0) { rc = flush_failed(p); break; }
        rc = eddy_cli_fail(a, "line %" PRId64 ": no key separator '%s' (%" PRId64
                           " message%s before it produced)", line_no, sep,
                           p->produced, p->produced == 1 ? "" : "s");
        break;
      }
      r.key = pl.key;
      r.key_len = pl.key_len;
      r.has_key = 1;
    }
    char msg[256];
    if (check_line(p, &r, msg, sizeof msg)) {
      /* The bad line is not written; every line before it is. */
      if (flush(p) != 0) { rc = flush_failed(p); break; }
      rc = eddy_cli_fail(a, "line %" PRId64 ": %s (%" PRId64 " message%s before "
                         "it produced)", line_no, msg, p->produced,
                         p->produced == 1 ? "" : "s");
      break;
    }
    /* The record points into the line: hand the line to the batch. */
    p->lines[p->n] = line;
    p->line_no[p->n] = line_no;
    p->recs[p->n++] = r;
    line = NULL;
    cap = 0;
    if (p->n == BATCH && flush(p) != 0) {
      rc = flush_failed(p);
      break;
    }
  }
  free(line);
  if (rc == 0 && flush(p) != 0) rc = flush_failed(p);
  for (size_t i = 0; i < p->n; i++) free(p->lines[i]);
done:
  fflush(stdout);
  eddy_buf_free(&p->print);
  eddy_store_close(p->s);
  eddy_kafka_close(p->k);
  free(p);
  return rc;
}

const eddy_cli_cmd eddy_cmd_produce = {
  "produce", "TOPIC [--key K] [--type T] [--header NAME=VALUE]... [VALUE]",
  "write a message, or one message per line of standard input",
  "With VALUE, writes one message.  Without it, reads standard input and\n"
  "writes one message per line (the newline removed), committing every 1000\n"
  "lines.  A line the topic refuses stops the run: the lines before it are\n"
  "written, it and the rest are not, and the exit status is 1.  A batch the\n"
  "store cannot take (a full disk) stops it the same way, at its first line.\n",
  produce_opts, 1, 2, run_produce
};
