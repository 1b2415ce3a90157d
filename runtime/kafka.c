/*
 * kafka.c - the log on Apache Kafka, through librdkafka (see kafka.h).
 */
#include "kafka.h"
#include "errors.h"
#include "headers.h"
#include "store.h"
#include "uuid.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#define TIMEOUT_MS 10000        /* metadata, admin and watermark requests */
#define DELIVERY_TIMEOUT_MS 60000
#define ID_HEADER "eddy-id"
#define ERROR_LOG_MS 10000

struct eddy_kafka {
  eddy_kafka_owner owner;       /* first: the opaque of k's own clients */
  char bootstrap[1024];
  char **props;                 /* name, value, ..., NULL */
  rd_kafka_t *producer;         /* made when first needed */
  rd_kafka_t *reader;           /* an assign-only consumer, for fetch */
  char errmsg[512];
  char last_error[256];         /* the last error a client reported */
  int debug;                    /* librdkafka's `debug` property is set */
  pthread_mutex_t mu;           /* last_error and the error log's memory */
  int log_errors;
  char logged[256];             /* the last error logged, and when */
  int64_t logged_at;
};

static int fail(eddy_kafka *k, int code, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static int fail(eddy_kafka *k, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->errmsg, sizeof k->errmsg, fmt, ap);
  va_end(ap);
  return code;
}

const char *eddy_kafka_errmsg(const eddy_kafka *k) { return k->errmsg; }
const char *eddy_kafka_last_error(const eddy_kafka *k) { return k->last_error; }

const char *eddy_kafka_bootstrap_servers(const eddy_kafka *k) { return k->bootstrap; }

int eddy_kafka_has_prop(const eddy_kafka *k, const char *name) {
  return eddy_kafka_prop(k, name) != NULL;
}

const char *eddy_kafka_prop(const eddy_kafka *k, const char *name) {
  for (char **p = k->props; p && p[0] && p[1]; p += 2)
    if (strcmp(p[0], name) == 0) return p[1];
  return NULL;
}

int eddy_kafka_bootstrap(const char *broker, char *out, size_t n, char *err, size_t errlen) {
  const char *scheme = "kafka://";
  if (!broker || strncmp(broker, scheme, strlen(scheme)) != 0) {
    snprintf(err, errlen, "broker '%s' is not a kafka:// URL (kafka://HOST:PORT[,HOST:PORT...])",
             broker ? broker : "");
    return -1;
  }
  const char *hosts = broker + strlen(scheme);
  /* Every entry HOST:PORT with a numeric port. */
  const char *p = hosts;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *colon = memchr(p, ':', len);
    size_t port_len = colon ? len - (size_t)(colon + 1 - p) : 0;
    int ok = colon && colon > p && port_len > 0 && port_len <= 5;
    for (size_t i = 0; ok && i < port_len; i++) ok = colon[1 + i] >= '0' && colon[1 + i] <= '9';
    if (!ok) {
      snprintf(err, errlen, "broker '%s': '%.*s' is not HOST:PORT", broker, (int)len, p);
      return -1;
    }
    if (!end) break;
    p = end + 1;
  }
  if (strlen(hosts) >= n) {
    snprintf(err, errlen, "broker '%s' is too long", broker);
    return -1;
  }
  snprintf(out, n, "%s", hosts);
  return 0;
}

/* librdkafka's own log lines stay out of eddy's output: failures reach
 * the caller as one line each (the last client error says why). */
/* librdkafka's own log lines stay out of eddy's output (failures reach
 * the caller as one line each, the last client error saying why), unless
 * the user asked for them with librdkafka's `debug` property. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  const eddy_kafka_owner *o = rd_kafka_opaque(rk);
  if (o && o->kafka->debug) eddy_logf("DEBUG", "kafka %s: %s", fac, buf);
  (void)level;
}

static rd_kafka_conf_t *new_conf(eddy_kafka *k, char *err, size_t errlen);

/* Errors the clients report (librdkafka's threads): kept for the one-line
 * failures of the command line, and logged by `eddy run` (log_errors), at
 * most once per ERROR_LOG_MS for a repeated text.  librdkafka reconnects
 * with backoff by itself; these say why it is doing so. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  eddy_kafka *k = ((eddy_kafka_owner *)opaque)->kafka;
  const char *text = reason ? reason : rd_kafka_err2str(err);
  pthread_mutex_lock(&k->mu);
  snprintf(k->last_error, sizeof k->last_error, "%s", text);
  int64_t now = eddy_now_ms();
  int say = k->log_errors &&
            (strcmp(k->logged, text) != 0 || now - k->logged_at >= ERROR_LOG_MS);
  if (say) {
    snprintf(k->logged, sizeof k->logged, "%s", text);
    k->logged_at = now;
  }
  pthread_mutex_unlock(&k->mu);
  if (say)
    eddy_logf(err == RD_KAFKA_RESP_ERR__FATAL ? "ERROR" : "WARN",
              "kafka: %s (reconnecting with backoff)", text);
}

void eddy_kafka_log_errors(eddy_kafka *k, int on) {
  pthread_mutex_lock(&k->mu);
  k->log_errors = on;
  pthread_mutex_unlock(&k->mu);
}

rd_kafka_conf_t *eddy_kafka_conf(eddy_kafka *k, char *err, size_t errlen) {
  return new_conf(k, err, errlen);
}

/* A configuration with the bootstrap servers and the user's properties. */
static rd_kafka_conf_t *new_conf(eddy_kafka *k, char *err, size_t errlen) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char e[512];
  if (rd_kafka_conf_set(c, "bootstrap.servers", k->bootstrap, e, sizeof e) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(c, "client.id", "eddy", e, sizeof e) != RD_KAFKA_CONF_OK) {
    snprintf(err, errlen, "%s", e);
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  rd_kafka_conf_set_log_cb(c, on_log);
  rd_kafka_conf_set_error_cb(c, on_error);
  rd_kafka_conf_set_opaque(c, &k->owner);
  for (char **p = k->props; p && p[0] && p[1]; p += 2) {
    if (strcmp(p[0], "debug") == 0) k->debug = 1;
    if (rd_kafka_conf_set(c, p[0], p[1], e, sizeof e) != RD_KAFKA_CONF_OK) {
      snprintf(err, errlen, "kafka property '%s': %s", p[0], e);
      rd_kafka_conf_destroy(c);
      return NULL;
    }
  }
  return c;
}

static int set(rd_kafka_conf_t *c, const char *name, const char *value, char *err,
               size_t errlen) {
  if (rd_kafka_conf_set(c, name, value, err, errlen) != RD_KAFKA_CONF_OK) return -1;
  return 0;
}

int eddy_kafka_open(const char *broker, const char *const *props, eddy_kafka **out,
                    char *err, size_t errlen) {
  *out = NULL;
  eddy_kafka *k = calloc(1, sizeof *k);
  if (!k) { snprintf(err, errlen, "out of memory"); return -1; }
  k->owner.kafka = k;
  pthread_mutex_init(&k->mu, NULL);
  if (eddy_kafka_bootstrap(broker, k->bootstrap, sizeof k->bootstrap, err, errlen) != 0) {
    free(k);
    return -1;
  }
  size_t n = 0;
  while (props && props[n]) n++;
  k->props = calloc(n + 2, sizeof *k->props);
  for (size_t i = 0; k->props && i < n; i++) k->props[i] = strdup(props[i]);
  /* Check the properties once, before anything connects. */
  rd_kafka_conf_t *c = k->props ? new_conf(k, err, errlen) : NULL;
  if (!c) {
    if (!k->props) snprintf(err, errlen, "out of memory");
    eddy_kafka_close(k);
    return -1;
  }
  rd_kafka_conf_destroy(c);
  *out = k;
  return 0;
}

int eddy_kafka_open_like(const eddy_kafka *k, eddy_kafka **out, char *err, size_t errlen) {
  char url[sizeof k->bootstrap + 16];
  snprintf(url, sizeof url, "kafka://%s", k->bootstrap);
  return eddy_kafka_open(url, (const char *const *)k->props, out, err, errlen);
}

void eddy_kafka_close(eddy_kafka *k) {
  if (!k) return;
  if (k->producer) {
    rd_kafka_flush(k->producer, 1000);
    rd_kafka_destroy(k->producer);
  }
  if (k->reader) {
    rd_kafka_consumer_close(k->reader);
    rd_kafka_destroy(k->reader);
  }
  for (char **p = k->props; p && *p; p++) free(*p);
  free(k->props);
  pthread_mutex_destroy(&k->mu);
  free(k);
}

/* ---- producing -------------------------------------------------------------- */

/* A message's opaque: a delivery (eddy_kafka_produce waits for each) or
 * a ticket (eddy_kafka_send counts them); both start with the tag. */
enum { DELIVERY = 1, TICKET = 2 };

typedef struct delivery {
  int tag;
  eddy_produced *out;
  rd_kafka_resp_err_t err;
  int done;
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  if (!m->_private) return;
  if (*(int *)m->_private == TICKET) {
    eddy_kafka_ticket *t = m->_private;
    t->outstanding--;
    if (m->err && t->failed++ == 0)
      snprintf(t->error, sizeof t->error, "%s", rd_kafka_err2str(m->err));
    return;
  }
  delivery *d = m->_private;
  d->err = m->err;
  d->done = 1;
  if (!m->err) {
    d->out->partition = m->partition;
    d->out->offset = m->offset;
  }
}

static rd_kafka_t *producer(eddy_kafka *k) {
  if (k->producer) return k->producer;
  char err[512];
  rd_kafka_conf_t *c = new_conf(k, err, sizeof err);
  /* Idempotent: a retried send is written once, in order.  murmur2 puts
   * keys where Kafka's Java producer does (and eddy's embedded log). */
  if (!c || set(c, "enable.idempotence", "true", err, sizeof err) ||
      set(c, "partitioner", "murmur2_random", err, sizeof err) ||
      set(c, "linger.ms", "5", err, sizeof err)) {
    if (c) rd_kafka_conf_destroy(c);
    fail(k, EDDY_EINVAL, "%s", err);
    return NULL;
  }
  rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
  k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof err);
  if (!k->producer) fail(k, EDDY_EIO, "cannot make a Kafka producer: %s", err);
  return k->producer;
}

static void nap_ms(int ms) {
  struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&t, NULL);
}

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Queues one record (its id first, in header eddy-id); copies
 * everything.  librdkafka's error, RD_KAFKA_RESP_ERR__QUEUE_FULL included. */
static rd_kafka_resp_err_t send_one(rd_kafka_t *rk, const char *topic, const eddy_record *r,
                                    const char *id, int64_t timestamp, void *opaque) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(r->nheaders + 1);
  rd_kafka_header_add(h, ID_HEADER, -1, id, (ssize_t)strlen(id));
  if (r->headers_raw) {
    size_t pos = 0;
    eddy_header e;
    while (eddy_headers_next(r->headers_raw, r->headers_raw_len, &pos, &e) == 1)
      rd_kafka_header_add(h, e.name, (ssize_t)e.name_len, e.value, (ssize_t)e.value_len);
  } else {
    for (size_t j = 0; j < r->nheaders; j++)
      rd_kafka_header_add(h, r->headers[j].name, (ssize_t)r->headers[j].name_len,
                          r->headers[j].value, (ssize_t)r->headers[j].value_len);
  }
  rd_kafka_resp_err_t e = rd_kafka_producev(
    rk, RD_KAFKA_V_TOPIC(topic),
    RD_KAFKA_V_PARTITION(r->partition >= 0 ? r->partition : RD_KAFKA_PARTITION_UA),
    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
    RD_KAFKA_V_KEY(r->has_key ? r->key : NULL, r->has_key ? r->key_len : 0),
    RD_KAFKA_V_VALUE((void *)r->value, r->value_len),
    RD_KAFKA_V_TIMESTAMP(timestamp), RD_KAFKA_V_HEADERS(h),
    RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  if (e) rd_kafka_headers_destroy(h);   /* owned by the message once queued */
  return e;
}

static int send_failed(eddy_kafka *k, const char *topic, rd_kafka_resp_err_t e) {
  return fail(k, e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                 e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? EDDY_ENOENT : EDDY_EIO,
              "producing to topic '%s': %s", topic, rd_kafka_err2str(e));
}

int eddy_kafka_produce(eddy_kafka *k, const char *topic, const eddy_record *recs, size_t n,
                       eddy_produced *out) {
  rd_kafka_t *rk = producer(k);
  if (!rk) return EDDY_EIO;
  delivery *d = calloc(n + 1, sizeof *d);
  if (!d) return fail(k, EDDY_ENOMEM, "out of memory");
  int rc = 0;
  size_t sent = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    const eddy_record *r = &recs[i];
    eddy_produced *o = &out[i];
    memset(o, 0, sizeof *o);
    if (r->id && r->id_len) snprintf(o->id, sizeof o->id, "%.*s", (int)r->id_len, r->id);
    else eddy_uuid_v7(o->id);
    o->timestamp = r->timestamp > 0 ? r->timestamp : now_ms();
    o->offset = -1;   /* until acknowledged */
    d[i].tag = DELIVERY;
    d[i].out = o;
    rd_kafka_resp_err_t e;
    while ((e = send_one(rk, topic, r, o->id, o->timestamp, &d[i])) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(rk, 100);
    if (e) rc = send_failed(k, topic, e);
    else sent++;
    rd_kafka_poll(rk, 0);
  }
  /* Wait for every report of what was sent, even after a failure: the
   * delivery state must not point into freed memory. */
  int64_t deadline = now_ms() + DELIVERY_TIMEOUT_MS;
  for (;;) {
    size_t done = 0;
    for (size_t i = 0; i < sent; i++) done += (size_t)d[i].done;
    if (done == sent) break;
    if (now_ms() > deadline) {
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_flush(rk, 1000);
      if (rc == 0)
        rc = fail(k, EDDY_ETIMEDOUT, "producing to topic '%s': no acknowledgement from %s "
                  "within %d s%s%s%s", topic, k->bootstrap, DELIVERY_TIMEOUT_MS / 1000,
                  k->last_error[0] ? " (" : "", k->last_error, k->last_error[0] ? ")" : "");
      break;
    }
    rd_kafka_poll(rk, 100);
  }
  for (size_t i = 0; i < sent && rc == 0; i++) {
    if (d[i].err)
      rc = fail(k, EDDY_EIO, "producing to topic '%s': %s", topic, rd_kafka_err2str(d[i].err));
  }
  free(d);
  return rc;
}

int eddy_kafka_send(eddy_kafka *k, const char *topic, const eddy_record *recs, size_t n,
                    eddy_kafka_ticket *t) {
  rd_kafka_t *rk = producer(k);
  if (!rk) return EDDY_EIO;
  t->tag = TICKET;
  size_t i = 0;
  for (; i < n; i++) {
    const eddy_record *r = &recs[i];
    char id[EDDY_MAX_ID_LEN + 1];
    if (r->id && r->id_len) snprintf(id, sizeof id, "%.*s", (int)r->id_len, r->id);
    else eddy_uuid_v7(id);
    rd_kafka_resp_err_t e =
      send_one(rk, topic, r, id, r->timestamp > 0 ? r->timestamp : now_ms(), t);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
    if (e) return send_failed(k, topic, e);
    t->outstanding++;
  }
  return (int)i;
}

void eddy_kafka_serve(eddy_kafka *k, int timeout_ms) {
  if (k->producer) rd_kafka_poll(k->producer, timeout_ms);
}

void eddy_kafka_purge(eddy_kafka *k) {
  if (!k->producer) return;
  rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(k->producer, 0);
}

int eddy_kafka_wake_on_reports(eddy_kafka *k, int fd) {
  rd_kafka_t *rk = producer(k);
  if (!rk) return EDDY_EIO;
  rd_kafka_queue_t *q = rd_kafka_queue_get_main(rk);
  rd_kafka_queue_io_event_enable(q, fd, "1", 1);
  rd_kafka_queue_destroy(q);
  return 0;
}

/* ---- topics ------------------------------------------------------------------ */

static int metadata(eddy_kafka *k, const char *name, const rd_kafka_metadata_t **md);

/* An admin request's client: the producer handle will do. */
static rd_kafka_t *admin(eddy_kafka *k) { return producer(k); }

int eddy_kafka_topic_create(eddy_kafka *k, const char *name, const eddy_topic_config *c,
                            int if_not_exists, int *created) {
  rd_kafka_t *rk = admin(k);
  if (!rk) return EDDY_EIO;
  char err[512];
  rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(name, c->partitions, -1, err, sizeof err);
  if (!t) return fail(k, EDDY_EINVAL, "topic '%s': %s", name, err);
  /* The limits as Kafka's topic configs (-1: forever / unlimited). */
  char v[32];
  snprintf(v, sizeof v, "%lld", (long long)c->retention_ms);
  rd_kafka_NewTopic_set_config(t, "retention.ms", v);
  snprintf(v, sizeof v, "%lld", (long long)c->retention_bytes);
  rd_kafka_NewTopic_set_config(t, "retention.bytes", v);
  snprintf(v, sizeof v, "%lld", (long long)c->max_message_bytes);
  rd_kafka_NewTopic_set_config(t, "max.message.bytes", v);
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_request_timeout(o, TIMEOUT_MS, err, sizeof err);
  rd_kafka_CreateTopics(rk, &t, 1, o, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, TIMEOUT_MS + 1000);
  int rc = 0;
  *created = 0;
  if (!ev) {
    rc = fail(k, EDDY_ETIMEDOUT, "creating topic '%s': no answer from %s", name, k->bootstrap);
  } else if (rd_kafka_event_error(ev)) {
    rc = fail(k, EDDY_EIO, "creating topic '%s': %s", name, rd_kafka_event_error_string(ev));
  } else {
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    rd_kafka_resp_err_t e = cnt ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      if (!if_not_exists) rc = fail(k, EDDY_EEXIST, "topic '%s' already exists", name);
    } else if (e) {
      const char *why = rd_kafka_topic_result_error_string(res[0]);
      rc = fail(k, EDDY_EIO, "creating topic '%s': %s", name, why ? why : rd_kafka_err2str(e));
    } else {
      *created = 1;
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  /* Done when every partition has a leader: what follows (produce, read)
   * then works at once. */
  for (int64_t deadline = now_ms() + TIMEOUT_MS; rc == 0 && *created;) {
    const rd_kafka_metadata_t *md;
    if (metadata(k, name, &md) != 0) break;
    int ready = md->topic_cnt == 1 && !md->topics[0].err &&
                md->topics[0].partition_cnt == c->partitions;
    for (int p = 0; ready && p < md->topics[0].partition_cnt; p++)
      ready = md->topics[0].partitions[p].leader >= 0 && !md->topics[0].partitions[p].err;
    rd_kafka_metadata_destroy(md);
    if (ready || now_ms() > deadline) break;
    nap_ms(50);
  }
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(t);
  return rc;
}

/* Metadata of one topic (name) or all (NULL). */
static int metadata(eddy_kafka *k, const char *name, const rd_kafka_metadata_t **md) {
  rd_kafka_t *rk = admin(k);
  if (!rk) return EDDY_EIO;
  rd_kafka_topic_t *t = name ? rd_kafka_topic_new(rk, name, NULL) : NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, name ? 0 : 1, t, md, TIMEOUT_MS);
  if (t) rd_kafka_topic_destroy(t);
  if (e) rd_kafka_poll(rk, 0);   /* serves the error callback: why */
  if (e) return fail(k, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? EDDY_ETIMEDOUT : EDDY_EIO,
                     "cannot reach Kafka at %s: %s", k->bootstrap,
                     k->last_error[0] ? k->last_error : rd_kafka_err2str(e));
  return 0;
}

int eddy_kafka_topic_partitions(eddy_kafka *k, const char *name, int *partitions) {
  const rd_kafka_metadata_t *md;
  int rc = metadata(k, name, &md);
  if (rc) return rc;
  rc = fail(k, EDDY_ENOENT, "unknown topic '%s'", name);
  for (int i = 0; i < md->topic_cnt; i++) {
    if (strcmp(md->topics[i].topic, name) != 0 || md->topics[i].err) continue;
    *partitions = md->topics[i].partition_cnt;
    k->errmsg[0] = 0;
    rc = 0;
  }
  rd_kafka_metadata_destroy(md);
  return rc;
}

/* Errors a cluster gives while a partition's leader moves or is being
 * elected (a topic just made, a broker restarting): worth another try. */
static int transient(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
         e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
         e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
         e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
         e == RD_KAFKA_RESP_ERR__TRANSPORT;
}

int eddy_kafka_offsets(eddy_kafka *k, const char *topic, int partition, int64_t *start,
                       int64_t *end) {
  rd_kafka_t *rk = admin(k);
  if (!rk) return EDDY_EIO;
  int64_t deadline = now_ms() + TIMEOUT_MS;
  rd_kafka_resp_err_t e;
  int wait = 20;
  while ((e = rd_kafka_query_watermark_offsets(rk, topic, partition, start, end,
                                               TIMEOUT_MS)) && transient(e) &&
         now_ms() + wait < deadline) {
    nap_ms(wait);
    if (wait < 500) wait *= 2;
  }
  if (e) return fail(k, EDDY_EIO, "topic '%s' partition %d: %s", topic, partition,
                     rd_kafka_err2str(e));
  return 0;
}

static int by_name(const void *a, const void *b) {
  const rd_kafka_metadata_topic_t *x = *(const rd_kafka_metadata_topic_t *const *)a;
  const rd_kafka_metadata_topic_t *y = *(const rd_kafka_metadata_topic_t *const *)b;
  return strcmp(x->topic, y->topic);
}

int eddy_kafka_topic_foreach(eddy_kafka *k,
                             int (*fn)(void *ud, const char *name, int partitions,
                                       const int64_t *starts, const int64_t *highs),
                             void *ud) {
  const rd_kafka_metadata_t *md;
  int rc = metadata(k, NULL, &md);
  if (rc) return rc;
  const rd_kafka_metadata_topic_t **list = calloc((size_t)md->topic_cnt + 1, sizeof *list);
  if (!list) { rd_kafka_metadata_destroy(md); return fail(k, EDDY_ENOMEM, "out of memory"); }
  int n = 0;
  for (int i = 0; i < md->topic_cnt; i++)
    if (md->topics[i].topic[0] != '_' && !md->topics[i].err) list[n++] = &md->topics[i];
  qsort(list, (size_t)n, sizeof *list, by_name);
  for (int i = 0; i < n && rc == 0; i++) {
    int np = list[i]->partition_cnt;
    int64_t *lo = calloc((size_t)np + 1, sizeof *lo), *hi = calloc((size_t)np + 1, sizeof *hi);
    if (!lo || !hi) rc = fail(k, EDDY_ENOMEM, "out of memory");
    for (int p = 0; p < np && rc == 0; p++)
      rc = eddy_kafka_offsets(k, list[i]->topic, p, &lo[p], &hi[p]);
    if (rc == 0) rc = fn(ud, list[i]->topic, np, lo, hi);
    free(lo);
    free(hi);
  }
  free(list);
  rd_kafka_metadata_destroy(md);
  return rc;
}

/* ---- reading ----------------------------------------------------------------- */

static int deliver(const char *topic, const rd_kafka_message_t *m, eddy_message_cb cb,
                   void *ud, eddy_kafka *k);

static rd_kafka_t *reader(eddy_kafka *k) {
  if (k->reader) return k->reader;
  char err[512];
  rd_kafka_conf_t *c = new_conf(k, err, sizeof err);
  /* Assign-only: it never joins the group nor commits.  An offset the
   * cluster calls out of range (a fetch error, or retention meanwhile)
   * restarts at the earliest: what was read already is skipped by offset,
   * where "latest" would end the read as if the partition were done. */
  if (!c || set(c, "group.id", "eddy-reader", err, sizeof err) ||
      set(c, "enable.auto.commit", "false", err, sizeof err) ||
      set(c, "auto.offset.reset", "earliest", err, sizeof err) ||
      set(c, "enable.partition.eof", "true", err, sizeof err)) {
    if (c) rd_kafka_conf_destroy(c);
    fail(k, EDDY_EINVAL, "%s", err);
    return NULL;
  }
  k->reader = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof err);
  if (!k->reader) fail(k, EDDY_EIO, "cannot make a Kafka consumer: %s", err);
  else rd_kafka_poll_set_consumer(k->reader);
  return k->reader;
}

int eddy_kafka_message(const struct rd_kafka_message_s *m, eddy_message_cb cb, void *ud) {
  return deliver(rd_kafka_topic_name(m->rkt), m, cb, ud, NULL);
}

/* Calls cb with message m as an eddy_message.  Returns cb's value. */
static int deliver(const char *topic, const rd_kafka_message_t *m, eddy_message_cb cb,
                   void *ud, eddy_kafka *k) {
  eddy_message e;
  memset(&e, 0, sizeof e);
  e.topic = topic;
  e.partition = m->partition;
  e.offset = m->offset;
  e.key = m->key;
  e.key_len = m->key ? m->key_len : 0;
  e.value = m->payload ? m->payload : "";
  e.value_len = m->len;
  e.timestamp = rd_kafka_message_timestamp(m, NULL);
  char id[96];
  rd_kafka_headers_t *h = NULL;
  eddy_header list[64];
  size_t nh = 0;
  const void *idv = NULL;
  size_t idl = 0;
  if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char *name;
    const void *v;
    size_t vl;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &vl) == 0; i++) {
      if (strcmp(name, ID_HEADER) == 0) { idv = v; idl = vl; continue; }
      if (nh < 64) list[nh++] = (eddy_header){ name, strlen(name), v ? v : "", vl };
    }
  }
  if (idv && idl > 0 && idl < sizeof id) {
    memcpy(id, idv, idl);
    id[idl] = 0;
  } else {
    snprintf(id, sizeof id, "%s/%d/%lld", topic, (int)m->partition, (long long)m->offset);
  }
  e.id = id;
  e.id_len = strlen(id);
  unsigned char *blob = NULL;
  if (nh) {
    blob = malloc(eddy_headers_size(list, nh));
    if (!blob) return k ? fail(k, EDDY_ENOMEM, "out of memory") : EDDY_ENOMEM;
    e.headers_len = eddy_headers_encode(list, nh, blob);
    e.headers = blob;
  }
  int rc = cb(ud, &e);
  free(blob);
  return rc;
}

int eddy_kafka_fetch(eddy_kafka *k, const char *topic, int partition, int64_t from,
                     int max, eddy_message_cb cb, void *ud) {
  int64_t lo, hi;
  int rc = eddy_kafka_offsets(k, topic, partition, &lo, &hi);
  if (rc) return rc;
  if (from < lo) from = lo;
  if (from >= hi || max <= 0) return 0;
  rd_kafka_t *rk = reader(k);
  if (!rk) return EDDY_EIO;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic, partition)->offset = from;
  rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) return fail(k, EDDY_EIO, "reading topic '%s' partition %d: %s", topic, partition,
                     rd_kafka_err2str(e));
  int got = 0;
  int64_t next = from;
  int64_t deadline = now_ms() + TIMEOUT_MS;
  while (got < max && next < hi && rc == 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) {
      if (now_ms() > deadline)
        rc = fail(k, EDDY_ETIMEDOUT, "reading topic '%s' partition %d: no messages from %s "
                  "within %d s", topic, partition, k->bootstrap, TIMEOUT_MS / 1000);
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      next = hi;       /* fewer than the watermark promised: retention */
    } else if (m->err) {
      rc = fail(k, EDDY_EIO, "reading topic '%s' partition %d: %s", topic, partition,
                rd_kafka_message_errstr(m));
    } else if (m->partition == partition && m->offset >= next) {
      next = m->offset + 1;
      int r = deliver(topic, m, cb, ud, k);
      if (r) rc = r;
      else got++;
      deadline = now_ms() + TIMEOUT_MS;
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(rk, NULL);
  return rc ? rc : got;
}
