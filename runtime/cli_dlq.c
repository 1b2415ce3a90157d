/*
 * cli_dlq.c - eddy dlq list | show | replay | purge: the dead-letter store.
 */
#include "cli.h"
#include "buf.h"
#include "errors.h"
#include "headers.h"
#include "kafka.h"
#include "log.h"
#include "quarantine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void json_field_bytes(eddy_buf *b, const char *name, const void *p,
                             size_t n, int present) {
  eddy_buf_printf(b, ",\"%s\":", name);
  if (!present) { eddy_buf_puts(b, "null"); return; }
  if (eddy_utf8_valid(p, n)) { eddy_buf_json_str(b, p, n); return; }
  eddy_buf_puts(b, "\"");
  eddy_buf_base64(b, p, n);
  eddy_buf_printf(b, "\",\"%s_encoding\":\"base64\"", name);
}

static void json_str_field(eddy_buf *b, const char *name, const char *s) {
  eddy_buf_printf(b, ",\"%s\":", name);
  if (!s) { eddy_buf_puts(b, "null"); return; }
  size_t n = strlen(s);
  if (eddy_utf8_valid(s, n)) eddy_buf_json_str(b, s, n);
  else json_field_bytes(b, name, s, n, 1);
}

static void entry_json(eddy_buf *b, const eddy_dlq_entry *e) {
  char t[32];
  eddy_buf_printf(b, "{\"seq\":%" PRId64, e->seq);
  json_str_field(b, "consumer", e->consumer);
  json_str_field(b, "id", e->id);
  json_str_field(b, "topic", e->topic);
  eddy_buf_printf(b, ",\"partition\":%d,\"offset\":%" PRId64, e->partition, e->offset);
  json_field_bytes(b, "key", e->key, e->key_len, e->has_key);
  json_field_bytes(b, "value", e->value, e->value_len, 1);
  eddy_buf_puts(b, ",\"headers\":[");
  size_t pos = 0;
  int k = 0;
  eddy_header h;
  while (eddy_headers_next(e->headers, e->headers_len, &pos, &h) == 1) {
    eddy_buf_puts(b, k++ ? ",[" : "[");
    if (eddy_utf8_valid(h.name, h.name_len) && eddy_utf8_valid(h.value, h.value_len)) {
      eddy_buf_json_str(b, h.name, h.name_len);
      eddy_buf_puts(b, ",");
      eddy_buf_json_str(b, h.value, h.value_len);
    } else {
      /* Bytes that are not UTF-8, in the name or the value: both in
       * base64, flagged by a third element. */
      eddy_buf_puts(b, "\"");
      eddy_buf_base64(b, h.name, h.name_len);
      eddy_buf_puts(b, "\",\"");
      eddy_buf_base64(b, h.value, h.value_len);
      eddy_buf_puts(b, "\",\"base64\"");
    }
    eddy_buf_puts(b, "]");
  }
  eddy_buf_printf(b, "],\"timestamp\":%" PRId64, e->timestamp);
  json_str_field(b, "reason", e->reason);
  json_str_field(b, "error", e->error);
  json_str_field(b, "traceback", e->traceback);
  eddy_buf_printf(b, ",\"attempts\":%d", e->attempts);
  eddy_format_time(e->first_failure, t);
  json_str_field(b, "first_failure", t);
  eddy_format_time(e->last_failure, t);
  json_str_field(b, "last_failure", t);
  json_str_field(b, "version", e->version);
  json_str_field(b, "dlq_topic", e->dlq_topic);
  eddy_format_time(e->quarantined_at, t);
  json_str_field(b, "quarantined_at", t);
  if (e->replayed_at) {
    eddy_format_time(e->replayed_at, t);
    json_str_field(b, "replayed_at", t);
  } else {
    eddy_buf_puts(b, ",\"replayed_at\":null");
  }
  eddy_buf_printf(b, ",\"replays\":%d}\n", e->replays);
}

/* The first line of s, at most max bytes, for one-line listings. */
static void one_line(char *out, size_t n, const char *s) {
  size_t i = 0;
  for (; s && s[i] && s[i] != '\n' && i + 1 < n; i++) out[i] = s[i];
  out[i] = '\0';
}

struct list_ctx { int json; eddy_buf b; int n; };

static int list_one(void *ud, const eddy_dlq_entry *e) {
  struct list_ctx *c = ud;
  eddy_buf_reset(&c->b);
  if (c->json) {
    entry_json(&c->b, e);
  } else {
    char err[90], when[32], where[300];
    one_line(err, sizeof err, e->error);
    eddy_format_time(e->quarantined_at, when);
    snprintf(where, sizeof where, "%s/%d@%" PRId64, e->topic, e->partition, e->offset);
    eddy_buf_printf(&c->b, "%-6" PRId64 " %-20s %-36s %-24s %8d  %-24s %s%s\n", e->seq,
                    e->consumer, e->id, where, e->attempts, when, err,
                    e->replayed_at ? " (replayed)" : "");
  }
  fwrite(c->b.data, 1, c->b.len, stdout);
  c->n++;
  return 0;
}

/* Reads an entry without printing it: the listing's first pass. */
static int check_one(void *ud, const eddy_dlq_entry *e) {
  (void)ud;
  (void)e;
  return 0;
}

static int run_list(const eddy_cli_args *a) {
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  struct list_ctx c = { eddy_cli_flag(a, "json"), EDDY_BUF_INIT, 0 };
  const char *consumer = eddy_cli_value(a, "consumer");
  int which = eddy_cli_flag(a, "all") ? EDDY_DLQ_ALL : EDDY_DLQ_PENDING;
  /* Read through once before printing, so that a store that fails
   * part-way (damaged) prints its error alone, not half a listing. */
  int rc = eddy_dlq_foreach(s, consumer, which, check_one, NULL);
  if (rc == 0 && !c.json)
    printf("%-6s %-20s %-36s %-24s %8s  %-24s %s\n", "SEQ", "CONSUMER", "ID", "FROM",
           "ATTEMPTS", "QUARANTINED", "ERROR");
  if (rc == 0) rc = eddy_dlq_foreach(s, consumer, which, list_one, &c);
  eddy_buf_free(&c.b);
  if (rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  eddy_store_close(s);
  return rc;
}

static const eddy_cli_opt list_opts[] = {
  { "consumer", 'c', "C", "only the messages consumer C quarantined" },
  { "all", 'a', NULL, "include messages already replayed" },
  { "json", 'j', NULL, "one JSON object per line, with every field" },
  { 0 }
};

const eddy_cli_cmd eddy_cmd_dlq_list = {
  "dlq list", "[--consumer C] [--all] [--json]", "list quarantined messages",
  "Lists the messages consumers quarantined and did not replay yet (--all:\n"
  "those too), oldest first.  SEQ names an entry for show, replay and purge;\n"
  "a message id does too.\n"
  "In JSON, a key or value that is not UTF-8 is base64 with\n"
  "\"key_encoding\"/\"value_encoding\": \"base64\" beside it; headers are\n"
  "[name, value] pairs, and a pair with bytes that are not UTF-8 is\n"
  "[base64 name, base64 value, \"base64\"].\n",
  list_opts, 0, 0, run_list
};

static int show_one(void *ud, const eddy_dlq_entry *e) {
  struct list_ctx *c = ud;
  if (c->json) return list_one(ud, e);
  char t[32];
  printf("%sseq:            %" PRId64 "\n", c->n++ ? "\n" : "", e->seq);
  printf("id:             %s\n", e->id);
  printf("consumer:       %s (version %s)\n", e->consumer, e->version);
  printf("from:           %s partition %d offset %" PRId64 "\n", e->topic, e->partition, e->offset);
  printf("key:            ");
  if (e->has_key) fwrite(e->key, 1, e->key_len, stdout); else printf("(none)");
  printf("\nvalue:          ");
  fwrite(e->value, 1, e->value_len, stdout);
  printf("\n");
  size_t pos = 0;
  eddy_header h;
  while (eddy_headers_next(e->headers, e->headers_len, &pos, &h) == 1)
    printf("header:         %.*s=%.*s\n", (int)h.name_len, h.name, (int)h.value_len, h.value);
  printf("reason:         %s\n", e->reason);
  printf("error:          %s\n", e->error);
  printf("attempts:       %d\n", e->attempts);
  eddy_format_time(e->first_failure, t);
  printf("first failure:  %s\n", t);
  eddy_format_time(e->last_failure, t);
  printf("last failure:   %s\n", t);
  eddy_format_time(e->quarantined_at, t);
  printf("quarantined:    %s (to topic %s)\n", t, e->dlq_topic);
  if (e->replayed_at) {
    eddy_format_time(e->replayed_at, t);
    printf("replayed:       %s (%d time%s)\n", t, e->replays, e->replays == 1 ? "" : "s");
  }
  if (e->traceback && *e->traceback) printf("traceback:\n%s\n", e->traceback);
  return 0;
}

static int run_show(const eddy_cli_args *a) {
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  struct list_ctx c = { eddy_cli_flag(a, "json"), EDDY_BUF_INIT, 0 };
  int rc = eddy_dlq_find(s, a->pos[0], eddy_cli_value(a, "consumer"), show_one, &c);
  eddy_buf_free(&c.b);
  if (rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  eddy_store_close(s);
  return rc;
}

static const eddy_cli_opt show_opts[] = {
  { "consumer", 'c', "C", "only consumer C's entry for that message" },
  { "json", 'j', NULL, "the entry as a JSON object" },
  { 0 }
};

const eddy_cli_cmd eddy_cmd_dlq_show = {
  "dlq show", "ID", "show a quarantined message: its bytes, the error, the traceback",
  "ID is an entry's SEQ (from dlq list) or a message id.\n",
  show_opts, 1, 1, run_show
};

/* Collects the seqs the command names: IDs, or --all. */
struct seqs { int64_t *v; size_t n, cap; };

static int add_seq(void *ud, const eddy_dlq_entry *e) {
  struct seqs *q = ud;
  if (q->n == q->cap) {
    size_t cap = q->cap ? q->cap * 2 : 64;
    int64_t *b = realloc(q->v, cap * sizeof *b);
    if (!b) return EDDY_ENOMEM;
    q->v = b;
    q->cap = cap;
  }
  for (size_t i = 0; i < q->n; i++) if (q->v[i] == e->seq) return 0;
  q->v[q->n++] = e->seq;
  return 0;
}

static int collect(const eddy_cli_args *a, eddy_store *s, struct seqs *q) {
  const char *consumer = eddy_cli_value(a, "consumer");
  if (eddy_cli_flag(a, "all"))
    return eddy_dlq_foreach(s, consumer, EDDY_DLQ_PENDING, add_seq, q);
  for (int i = 0; i < a->npos; i++) {
    int rc = eddy_dlq_find(s, a->pos[i], consumer, add_seq, q);
    if (rc) return rc;
  }
  return 0;
}

static void progress(size_t done, size_t total) {
  int width = 40, filled = total ? (int)(done * (size_t)width / total) : width;
  fprintf(stderr, "\r[%.*s%*s] %zu/%zu", filled,
          "########################################", width - filled, "", done, total);
  if (done == total) fputc('\n', stderr);
}

static int run_replay(const eddy_cli_args *a) {
  if (!eddy_cli_flag(a, "all") && a->npos == 0)
    return eddy_cli_usage_error(a, "name the messages to replay (ID...) or give --all");
  if (eddy_cli_flag(a, "all") && a->npos)
    return eddy_cli_usage_error(a, "give either IDs or --all, not both");
  eddy_store *s = eddy_cli_open(a, 0);
  if (!s) return EDDY_EXIT_FAIL;
  /* The data directory of an app on Kafka remembers its broker: replays
   * go there, not to the embedded log no one reads. */
  char stored[1024];
  if (eddy_store_meta_get(s, "broker", stored, sizeof stored) < 0) {
    int rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
    eddy_store_close(s);
    return rc;
  }
  eddy_kafka *k = NULL;
  int krc = eddy_cli_kafka_or(a, stored, &k);
  if (krc) { eddy_store_close(s); return krc; }
  struct seqs q = { NULL, 0, 0 };
  int rc = collect(a, s, &q);
  int dry = eddy_cli_flag(a, "dry-run");
  int all = eddy_cli_flag(a, "all");
  int bar = all && !dry && isatty(STDERR_FILENO) && q.n > 1;
  size_t done = 0, skipped = 0;
  for (size_t i = 0; rc == 0 && i < q.n; i++) {
    if (dry) {
      printf("would replay %" PRId64 "\n", q.v[i]);
      done++;
      continue;
    }
    int p;
    int64_t off;
    /* --all replays what is pending when its turn comes: another replay
     * running at once may have taken an entry since it was listed. */
    rc = eddy_dlq_replay(s, k, q.v[i], all, &p, &off);
    if (rc == 1) { rc = 0; skipped++; }
    else if (rc == 0) {
      done++;
      if (!bar) printf("replayed %" PRId64 " to partition %d offset %" PRId64 "\n",
                       q.v[i], p, off);
    }
    if (rc == 0 && bar) progress(i + 1, q.n);
  }
  if (rc == 0 && skipped)
    printf("replayed %zu message%s%s%s (%zu others were replayed or purged meanwhile by another process)\n",
           done, done == 1 ? "" : "s", k ? " on Kafka at " : "",
           k ? eddy_kafka_bootstrap_servers(k) : "", skipped);
  else if (rc == 0)
    printf("%s %zu message%s%s%s\n", dry ? "would replay" : "replayed", done,
           done == 1 ? "" : "s", k ? " on Kafka at " : "",
           k ? eddy_kafka_bootstrap_servers(k) : "");
  else rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  free(q.v);
  eddy_store_close(s);
  eddy_kafka_close(k);
  return rc;
}

static const eddy_cli_opt replay_opts[] = {
  { "all", 'a', NULL, "every quarantined message not replayed yet" },
  { "consumer", 'c', "C", "only consumer C's messages" },
  { "dry-run", 'n', NULL, "print what would be replayed, change nothing" },
  EDDY_CLI_KAFKA_OPTS,
  { 0 }
};

const eddy_cli_cmd eddy_cmd_dlq_replay = {
  "dlq replay", "ID...|--all [--consumer C] [--dry-run]",
  "put quarantined messages back on their topic, with their original ids",
  "A replay produces the original message (id, key, value, headers) to its\n"
  "original topic again.  It keeps the message id, so consumers that\n"
  "handled the message already drop the copy: replaying twice handles it\n"
  "once.  The data directory of an app that runs on Kafka remembers its\n"
  "broker, and replays go there (--broker and --kafka say otherwise).\n"
  "--all replays each entry that is still pending when its turn comes: two\n"
  "replays --all at once replay every entry once between them.\n",
  replay_opts, 0, EDDY_CLI_MAX_POS, run_replay
};

static int run_purge(const eddy_cli_args *a) {
  if (!eddy_cli_flag(a, "all") && a->npos == 0)
    return eddy_cli_usage_error(a, "name the messages to purge (ID...) or give --all");
  if (eddy_cli_flag(a, "all") && a->npos)
    return eddy_cli_usage_error(a, "give either IDs or --all, not both");
  eddy_store *s = eddy_cli_open(a, 0);
  if (!s) return EDDY_EXIT_FAIL;
  struct seqs q = { NULL, 0, 0 };
  int rc = 0;
  if (eddy_cli_flag(a, "all"))
    rc = eddy_dlq_foreach(s, eddy_cli_value(a, "consumer"), EDDY_DLQ_ALL, add_seq, &q);
  else
    rc = collect(a, s, &q);
  for (size_t i = 0; rc == 0 && i < q.n; i++) rc = eddy_dlq_purge(s, q.v[i]);
  if (rc == 0) printf("purged %zu message%s\n", q.n, q.n == 1 ? "" : "s");
  else rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  free(q.v);
  eddy_store_close(s);
  return rc;
}

static const eddy_cli_opt purge_opts[] = {
  { "all", 'a', NULL, "every entry (of --consumer C, if given)" },
  { "consumer", 'c', "C", "only consumer C's entries" },
  { 0 }
};

const eddy_cli_cmd eddy_cmd_dlq_purge = {
  "dlq purge", "ID...|--all [--consumer C]",
  "delete entries from the dead-letter store (the dlq topic keeps its copy)",
  NULL, purge_opts, 0, EDDY_CLI_MAX_POS, run_purge
};
