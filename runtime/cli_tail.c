/*
 * cli_tail.c - eddy tail: print the messages of a topic.
 *
 * The partitions are merged by timestamp (ties by id, partition, offset),
 * so the output reads in the order messages were produced, while each
 * partition's messages stay in offset order.
 */
#include "cli.h"
#include "buf.h"
#include "errors.h"
#include "kafka.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK 512
#define DEFAULT_LAST 10
#define FOLLOW_POLL_MS 100

/* A message copied out of the store (one allocation). */
typedef struct owned_msg {
  int partition;
  int64_t offset, timestamp;
  char *id, *key, *value, *headers;
  size_t id_len, key_len, value_len, headers_len;
  int has_key;
} owned_msg;

static owned_msg *own(const eddy_message *m) {
  size_t n = sizeof(owned_msg) + m->id_len + m->key_len + m->value_len +
             m->headers_len + 1;
  owned_msg *o = malloc(n);
  if (!o) return NULL;
  char *at = (char *)(o + 1);
  o->partition = m->partition;
  o->offset = m->offset;
  o->timestamp = m->timestamp;
  o->id = at; memcpy(at, m->id, m->id_len); o->id_len = m->id_len; at += m->id_len;
  o->has_key = m->key != NULL;
  o->key = at; if (m->key_len) memcpy(at, m->key, m->key_len);
  o->key_len = m->key_len; at += m->key_len;
  o->value = at; if (m->value_len) memcpy(at, m->value, m->value_len);
  o->value_len = m->value_len; at += m->value_len;
  o->headers = at; if (m->headers_len) memcpy(at, m->headers, m->headers_len);
  o->headers_len = m->headers_len; at += m->headers_len;
  *at = '\0';
  return o;
}

static void json_bytes(eddy_buf *b, const char *field, const void *p, size_t n) {
  eddy_buf_printf(b, ",\"%s\":", field);
  if (eddy_utf8_valid(p, n)) {
    eddy_buf_json_str(b, p, n);
  } else {
    eddy_buf_puts(b, "\"");
    eddy_buf_base64(b, p, n);
    eddy_buf_printf(b, "\",\"%s_encoding\":\"base64\"", field);
  }
}

/* A header name as a JSON string: its base64 when the message's names
 * are written so (one of them is not UTF-8), else the name itself. */
static void json_header_name(eddy_buf *b, const char *p, size_t n, int base64) {
  if (!base64) { eddy_buf_json_str(b, p, n); return; }
  eddy_buf_puts(b, "\"");
  eddy_buf_base64(b, p, n);
  eddy_buf_puts(b, "\"");
}

/* A header value: a JSON string, or its base64 when it is not UTF-8. */
static void json_header_value(eddy_buf *b, const char *p, size_t n, int *binary) {
  if (eddy_utf8_valid(p, n)) { eddy_buf_json_str(b, p, n); return; }
  *binary = 1;
  eddy_buf_puts(b, "\"");
  eddy_buf_base64(b, p, n);
  eddy_buf_puts(b, "\"");
}

void eddy_cli_message_json(eddy_buf *b, const eddy_message *m) {
  eddy_buf_puts(b, "{\"topic\":");
  eddy_buf_json_str(b, m->topic, strlen(m->topic));
  eddy_buf_printf(b, ",\"partition\":%d,\"offset\":%" PRId64 ",\"id\":",
                  m->partition, m->offset);
  eddy_buf_json_str(b, m->id, m->id_len);
  if (m->key) json_bytes(b, "key", m->key, m->key_len);
  else eddy_buf_puts(b, ",\"key\":null");
  json_bytes(b, "value", m->value, m->value_len);
  /* Headers as an object in their order; a name that repeats gets an array
   * of its values, so nothing is dropped. */
  eddy_buf_puts(b, ",\"headers\":{");
  size_t pos = 0, count = 0, start = 0;
  int binary = 0;
  eddy_header h, e;
  /* Names are bytes too.  When one is not UTF-8, every name of the message
   * is written in base64 (flagged by header_names_encoding): encoding only
   * that one could make it equal to another name written as it is. */
  int names64 = 0;
  while (!names64 && eddy_headers_next(m->headers, m->headers_len, &pos, &h) == 1)
    names64 = !eddy_utf8_valid(h.name, h.name_len);
  pos = 0;
  for (; eddy_headers_next(m->headers, m->headers_len, &pos, &h) == 1; start = pos) {
    /* O(n^2) in the number of headers, which is small. */
    int earlier = 0, repeats = 0;
    size_t q = 0;
    while (q < start && eddy_headers_next(m->headers, m->headers_len, &q, &e) == 1)
      if (e.name_len == h.name_len && memcmp(e.name, h.name, h.name_len) == 0)
        earlier = 1;
    if (earlier) continue;
    q = pos;
    while (eddy_headers_next(m->headers, m->headers_len, &q, &e) == 1)
      if (e.name_len == h.name_len && memcmp(e.name, h.name, h.name_len) == 0)
        repeats++;
    if (count++) eddy_buf_puts(b, ",");
    json_header_name(b, h.name, h.name_len, names64);
    eddy_buf_puts(b, repeats ? ":[" : ":");
    json_header_value(b, h.value, h.value_len, &binary);
    q = pos;
    while (repeats && eddy_headers_next(m->headers, m->headers_len, &q, &e) == 1)
      if (e.name_len == h.name_len && memcmp(e.name, h.name, h.name_len) == 0) {
        eddy_buf_puts(b, ",");
        json_header_value(b, e.value, e.value_len, &binary);
      }
    if (repeats) eddy_buf_puts(b, "]");
  }
  eddy_buf_puts(b, "}");
  if (names64) eddy_buf_puts(b, ",\"header_names_encoding\":\"base64\"");
  if (binary) {
    /* Name the headers whose values were written as base64. */
    eddy_buf_puts(b, ",\"headers_base64\":[");
    size_t k = 0;
    pos = 0;
    while (eddy_headers_next(m->headers, m->headers_len, &pos, &h) == 1)
      if (!eddy_utf8_valid(h.value, h.value_len)) {
        if (k++) eddy_buf_puts(b, ",");
        json_header_name(b, h.name, h.name_len, names64);
      }
    eddy_buf_puts(b, "]");
  }
  eddy_buf_printf(b, ",\"timestamp\":%" PRId64 "}\n", m->timestamp);
}

struct tail {
  const eddy_cli_args *a;
  eddy_store *s;
  eddy_kafka *k;      /* --broker: Kafka instead of s */
  const char *topic;
  int json;
  int64_t limit;      /* -1: none */
  int64_t printed;
  int np;
  int first, last;    /* partitions read: [first, last] */
  int64_t *next;      /* per partition: offset to fetch next */
  owned_msg ***buf;   /* per partition: fetched, not yet printed */
  int *nbuf, *head;
  eddy_buf out;
};

/* The log read: the store's, or Kafka's with --broker. */
static int fetch(struct tail *t, int p, int64_t from, int max, eddy_message_cb cb, void *ud) {
  return t->k ? eddy_kafka_fetch(t->k, t->topic, p, from, max, cb, ud)
              : eddy_log_fetch(t->s, t->topic, p, from, max, cb, ud);
}

static int offsets(struct tail *t, int p, int64_t *start, int64_t *end) {
  return t->k ? eddy_kafka_offsets(t->k, t->topic, p, start, end)
              : eddy_log_offsets(t->s, t->topic, p, start, end);
}

static int skip(void *ud, const eddy_message *m) {
  *(int64_t *)ud = m->offset + 1;
  return 0;
}

/* Reads partitions [first, last] from their first message without
 * printing anything, so that a store that fails part-way (damaged) fails
 * before the first line, not half-way through the listing. */
static int read_through(struct tail *t) {
  for (int p = t->first; p <= t->last; p++) {
    int64_t next = 0, before;
    do {
      before = next;
      int got = fetch(t, p, next, CHUNK, skip, &next);
      if (got < 0) return got;
    } while (next != before);
  }
  return 0;
}

static int collect(void *ud, const eddy_message *m) {
  struct tail *t = ud;
  owned_msg *o = own(m);
  if (!o) return EDDY_ENOMEM;
  t->buf[m->partition][t->nbuf[m->partition]++] = o;
  t->next[m->partition] = m->offset + 1;
  return 0;
}

/* Refills partition p's buffer when it is empty.  Returns 0 or a code. */
static int refill(struct tail *t, int p) {
  if (t->head[p] < t->nbuf[p]) return 0;
  for (int i = 0; i < t->nbuf[p]; i++) free(t->buf[p][i]);
  t->nbuf[p] = t->head[p] = 0;
  int rc = fetch(t, p, t->next[p], CHUNK, collect, t);
  return rc < 0 ? rc : 0;
}

static void print_msg(struct tail *t, const owned_msg *o) {
  eddy_buf *b = &t->out;
  eddy_buf_reset(b);
  if (t->json) {
    eddy_message m = { t->topic, o->partition, o->offset, o->id, o->id_len,
                       o->has_key ? o->key : NULL, o->key_len, o->value,
                       o->value_len, o->headers, o->headers_len, o->timestamp };
    eddy_cli_message_json(b, &m);
  } else {
    eddy_buf_printf(b, "[%s/%d@%" PRId64 "] ", t->topic, o->partition, o->offset);
    if (o->has_key) {
      eddy_buf_puts(b, "key=");
      eddy_buf_add(b, o->key, o->key_len);
      eddy_buf_puts(b, " ");
    }
    eddy_buf_add(b, o->value, o->value_len);
    eddy_buf_puts(b, "\n");
  }
  fwrite(b->data, 1, b->len, stdout);
  t->printed++;
}

/* Production order as far as the store knows it: by timestamp, then by id
 * (UUIDv7s from one producer are strictly increasing within a
 * millisecond), then by partition and offset. */
static int cmp_msgs(const owned_msg *a, const owned_msg *b) {
  if (a->timestamp != b->timestamp) return a->timestamp < b->timestamp ? -1 : 1;
  size_t n = a->id_len < b->id_len ? a->id_len : b->id_len;
  int c = memcmp(a->id, b->id, n);
  if (c) return c;
  if (a->id_len != b->id_len) return a->id_len < b->id_len ? -1 : 1;
  if (a->partition != b->partition) return a->partition < b->partition ? -1 : 1;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

static int before(const owned_msg *a, const owned_msg *b) {
  return cmp_msgs(a, b) < 0;
}

/* Prints every message now available, merged by timestamp, until the
 * limit.  Returns 0 or a negative code. */
static int drain(struct tail *t) {
  for (;;) {
    if (t->limit >= 0 && t->printed >= t->limit) return 0;
    int best = -1;
    for (int p = t->first; p <= t->last; p++) {
      int rc = refill(t, p);
      if (rc) return rc;
      if (t->head[p] == t->nbuf[p]) continue;
      if (best < 0) { best = p; continue; }
      if (before(t->buf[p][t->head[p]], t->buf[best][t->head[best]])) best = p;
    }
    if (best < 0) return 0;
    print_msg(t, t->buf[best][t->head[best]++]);
  }
}

static int cmp_time(const void *x, const void *y) {
  return cmp_msgs(*(owned_msg *const *)x, *(owned_msg *const *)y);
}

struct collect_all {
  owned_msg **all;
  size_t n, cap;
};

static int collect_into(void *ud, const eddy_message *m) {
  struct collect_all *c = ud;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    owned_msg **bigger = realloc(c->all, cap * sizeof *bigger);
    if (!bigger) return EDDY_ENOMEM;
    c->all = bigger;
    c->cap = cap;
  }
  owned_msg *o = own(m);
  if (!o) return EDDY_ENOMEM;
  c->all[c->n++] = o;
  return 0;
}

/* The last n messages of the topic by timestamp: the last n of each
 * partition hold them. */
static int print_last(struct tail *t, int64_t n) {
  struct collect_all c = { NULL, 0, 0 };
  int rc = 0;
  for (int p = t->first; p <= t->last && rc == 0; p++) {
    int64_t start, end;
    rc = offsets(t, p, &start, &end);
    if (rc) break;
    int64_t from = end - n > start ? end - n : start;
    while (rc == 0 && from < end) {
      size_t before = c.n;
      int got = fetch(t, p, from, CHUNK, collect_into, &c);
      if (got < 0) { rc = got; break; }
      if (c.n == before) break;
      from = c.all[c.n - 1]->offset + 1;
    }
    t->next[p] = end;
  }
  if (rc == 0) {
    if (c.n) qsort(c.all, c.n, sizeof *c.all, cmp_time);
    for (size_t i = c.n > (size_t)n ? c.n - (size_t)n : 0; i < c.n; i++)
      print_msg(t, c.all[i]);
  }
  for (size_t i = 0; i < c.n; i++) free(c.all[i]);
  free(c.all);
  return rc;
}

static int run_tail(const eddy_cli_args *a) {
  struct tail t;
  memset(&t, 0, sizeof t);
  t.a = a;
  t.topic = a->pos[0];
  t.json = eddy_cli_flag(a, "json");
  t.limit = -1;
  if (eddy_cli_value(a, "limit") &&
      eddy_cli_int(a, "limit", 0, INT64_MAX, &t.limit) != 0)
    return EDDY_EXIT_USAGE;
  int64_t part = -1;
  if (eddy_cli_value(a, "partition") &&
      eddy_cli_int(a, "partition", 0, EDDY_MAX_PARTITIONS - 1, &part) != 0)
    return EDDY_EXIT_USAGE;
  int follow = eddy_cli_flag(a, "follow");
  int from_start = eddy_cli_flag(a, "from-beginning");
  int rc = eddy_cli_kafka(a, &t.k);
  if (rc) return rc;
  char err[512] = "";
  if (t.k) {
    if ((rc = eddy_kafka_topic_partitions(t.k, t.topic, &t.np)) != 0) goto done;
  } else {
    t.s = eddy_cli_open(a, EDDY_CLI_READ);
    if (!t.s) return EDDY_EXIT_FAIL;
    eddy_topic_info info;
    if ((rc = eddy_topic_get(t.s, t.topic, &info)) != 0) goto done;
    t.np = info.config.partitions;
  }
  if (part >= t.np) {
    snprintf(err, sizeof err, "topic '%s' has no partition %d (it has %d)", t.topic,
             (int)part, t.np);
    rc = EDDY_EINVAL;
    goto done;
  }
  t.first = part >= 0 ? (int)part : 0;
  t.last = part >= 0 ? (int)part : t.np - 1;
  t.next = calloc((size_t)t.np, sizeof *t.next);
  t.buf = calloc((size_t)t.np, sizeof *t.buf);
  t.nbuf = calloc((size_t)t.np, sizeof *t.nbuf);
  t.head = calloc((size_t)t.np, sizeof *t.head);
  if (!t.next || !t.buf || !t.nbuf || !t.head) { rc = EDDY_ENOMEM; goto done; }
  for (int p = 0; p < t.np; p++) {
    t.buf[p] = malloc(CHUNK * sizeof **t.buf);
    if (!t.buf[p]) { rc = EDDY_ENOMEM; goto done; }
  }
  if (from_start) {
    if (!t.k) rc = read_through(&t);
    if (rc == 0) rc = drain(&t);
  } else if (follow) {
    for (int p = t.first; p <= t.last && rc == 0; p++) {
      int64_t start;
      rc = offsets(&t, p, &start, &t.next[p]);
    }
  } else {
    rc = print_last(&t, t.limit >= 0 ? t.limit : DEFAULT_LAST);
  }
  fflush(stdout);
  if (follow) {
    eddy_cli_catch_signals();
    while (rc == 0 && !eddy_cli_stop && (t.limit < 0 || t.printed < t.limit)) {
      struct timespec ts = { 0, FOLLOW_POLL_MS * 1000000L };
      nanosleep(&ts, NULL);
      if (t.s && eddy_store_stale(t.s)) {
        /* A read-only store no process had open, and now one writes it:
         * read it as that process's readers do, to see what it writes. */
        eddy_store_close(t.s);
        t.s = eddy_cli_open(a, EDDY_CLI_READ);
        if (!t.s) { rc = EDDY_EXIT_FAIL; goto out; }   /* said by eddy_cli_open */
      }
      rc = drain(&t);
      fflush(stdout);
    }
  }
done:
  if (rc == EDDY_ENOMEM) snprintf(err, sizeof err, "out of memory");
  if (rc) rc = eddy_cli_fail(a, "%s", err[0] ? err : t.k ? eddy_kafka_errmsg(t.k)
                                                          : eddy_store_errmsg(t.s));
out:
  for (int p = 0; t.buf && p < t.np; p++) {
    for (int i = 0; t.nbuf && i < t.nbuf[p]; i++) free(t.buf[p][i]);
    free(t.buf[p]);
  }
  free(t.buf); free(t.next); free(t.nbuf); free(t.head);
  eddy_buf_free(&t.out);
  eddy_store_close(t.s);
  eddy_kafka_close(t.k);
  return rc;
}

static const eddy_cli_opt tail_opts[] = {
  { "from-beginning", 'b', NULL, "print from the first stored message" },
  { "limit", 'n', "N", "print at most N messages (without --from-beginning: the last N; default 10)" },
  { "follow", 'f', NULL, "keep waiting for new messages (until SIGINT, or --limit)" },
  { "partition", 'p', "P", "read partition P only" },
  { "json", 'j', NULL, "one JSON object per line: topic, partition, offset, id, key, value, headers, timestamp" },
  EDDY_CLI_KAFKA_OPTS,
  { 0 }
};

const eddy_cli_cmd eddy_cmd_tail = {
  "tail", "TOPIC [--from-beginning] [--limit N] [--follow] [--json]",
  "print messages of a topic",
  "Like tail(1): prints the last 10 messages (or --limit N) and exits;\n"
  "--from-beginning prints from the first stored message instead, and\n"
  "--follow keeps printing new messages as they arrive.  Partitions are\n"
  "merged by timestamp; each partition's messages stay in offset order.\n"
  "In JSON, a key or value that is not UTF-8 is base64 with\n"
  "\"key_encoding\"/\"value_encoding\": \"base64\" beside it; headers are an\n"
  "object in their order, a repeated name holding an array of its values;\n"
  "header values that are not UTF-8 are base64, their names listed in\n"
  "\"headers_base64\"; when a header name is not UTF-8, every name of that\n"
  "message is base64, with \"header_names_encoding\": \"base64\".\n",
  tail_opts, 1, 1, run_tail
};
