/*
 * store.c - opening, checking and creating the SQLite store; transactions and
 * the prepared-statement cache every other concept uses.
 */
#include "store.h"
#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <sqlite3.h>

#define STMT_CACHE 64

struct eddy_store {
  sqlite3 *db;
  char *dir;
  char *path;
  int busy_timeout_ms;
  int in_tx;
  int read_only;
  int immutable;          /* read-only, as a file no process has open */
  int had_wal;            /* eddy.db-wal existed when the store was opened */
  struct stat opened;     /* eddy.db when it was opened (immutable only) */
  int last_code;
  unsigned rr;
  int64_t last_trim;
  int64_t existing_size;  /* of eddy.db when opened; -1: it did not exist */
  int nstmt;
  const char *stmt_sql[STMT_CACHE];
  sqlite3_stmt *stmt[STMT_CACHE];
  char errmsg[512];
};

/* Tables added to version 1 after it shipped: made in a new store with the
 * rest, and in an older one when it is opened. */
#define TIMERS_SCHEMA \
  "CREATE TABLE IF NOT EXISTS timers(" \
  "  seq INTEGER PRIMARY KEY," \
  "  due_at INTEGER NOT NULL," \
  "  topic TEXT NOT NULL," \
  "  id TEXT NOT NULL," \
  "  key BLOB," \
  "  value BLOB NOT NULL," \
  "  headers BLOB," \
  "  created_at INTEGER NOT NULL);" \
  "CREATE INDEX IF NOT EXISTS timers_by_due ON timers(due_at);"

/* Messages whose handler calls took eddy down (crashes.h). */
#define CRASHES_SCHEMA \
  "CREATE TABLE IF NOT EXISTS crashes(" \
  "  consumer INTEGER NOT NULL," \
  "  topic TEXT NOT NULL," \
  "  partition INTEGER NOT NULL," \
  "  offset INTEGER NOT NULL," \
  "  runs INTEGER NOT NULL," \
  "  signal INTEGER NOT NULL," \
  "  stuck INTEGER NOT NULL," \
  "  last_at INTEGER NOT NULL," \
  "  PRIMARY KEY(consumer, topic, partition, offset)) WITHOUT ROWID;"

/* The schema of version 1.  docs/store.md explains every table. */
static const char *schema_v1 =
  "CREATE TABLE meta("
  "  name TEXT PRIMARY KEY,"
  "  value TEXT NOT NULL) WITHOUT ROWID;"
  "CREATE TABLE topics("
  "  id INTEGER PRIMARY KEY,"
  "  name TEXT NOT NULL UNIQUE,"
  "  partitions INTEGER NOT NULL,"
  "  retention_ms INTEGER NOT NULL DEFAULT -1,"
  "  retention_bytes INTEGER NOT NULL DEFAULT -1,"
  "  max_message_bytes INTEGER NOT NULL,"
  "  created_at INTEGER NOT NULL);"
  "CREATE TABLE partitions("
  "  topic_id INTEGER NOT NULL,"
  "  partition INTEGER NOT NULL,"
  "  log_start INTEGER NOT NULL DEFAULT 0,"
  "  next_offset INTEGER NOT NULL DEFAULT 0,"
  "  bytes INTEGER NOT NULL DEFAULT 0,"
  "  PRIMARY KEY(topic_id, partition)) WITHOUT ROWID;"
  "CREATE TABLE messages("
  "  topic_id INTEGER NOT NULL,"
  "  partition INTEGER NOT NULL,"
  "  offset INTEGER NOT NULL,"
  "  id TEXT NOT NULL,"
  "  key BLOB,"
  "  value BLOB NOT NULL,"
  "  headers BLOB,"
  "  ts INTEGER NOT NULL,"
  "  PRIMARY KEY(topic_id, partition, offset)) WITHOUT ROWID;"
  "CREATE TABLE group_offsets("
  "  group_name TEXT NOT NULL,"
  "  topic_id INTEGER NOT NULL,"
  "  partition INTEGER NOT NULL,"
  "  offset INTEGER NOT NULL,"
  "  updated_at INTEGER NOT NULL,"
  "  PRIMARY KEY(group_name, topic_id, partition)) WITHOUT ROWID;"
  "CREATE TABLE done_offsets("
  "  group_name TEXT NOT NULL,"
  "  topic_id INTEGER NOT NULL,"
  "  partition INTEGER NOT NULL,"
  "  offset INTEGER NOT NULL,"
  "  PRIMARY KEY(group_name, topic_id, partition, offset)) WITHOUT ROWID;"
  "CREATE TABLE consumers("
  "  id INTEGER PRIMARY KEY,"
  "  name TEXT NOT NULL UNIQUE,"
  "  created_at INTEGER NOT NULL);"
  "CREATE TABLE dedupe("
  "  id INTEGER PRIMARY KEY,"
  "  consumer_id INTEGER NOT NULL,"
  "  lo TEXT NOT NULL,"
  "  hi TEXT NOT NULL,"
  "  n INTEGER NOT NULL,"
  "  keys BLOB NOT NULL,"
  "  created_at INTEGER NOT NULL);"
  "CREATE INDEX dedupe_span ON dedupe(consumer_id, hi, lo);"
  "CREATE TABLE state("
  "  consumer_id INTEGER NOT NULL,"
  "  key TEXT NOT NULL,"
  "  value TEXT NOT NULL,"
  "  updated_at INTEGER NOT NULL,"
  "  PRIMARY KEY(consumer_id, key)) WITHOUT ROWID;"
  "CREATE TABLE outbox("
  "  seq INTEGER PRIMARY KEY,"
  "  topic TEXT NOT NULL,"
  "  id TEXT NOT NULL,"
  "  key BLOB,"
  "  value BLOB NOT NULL,"
  "  headers BLOB,"
  "  created_at INTEGER NOT NULL);"
  "CREATE TABLE dlq("
  "  seq INTEGER PRIMARY KEY,"
  "  consumer TEXT NOT NULL,"
  "  id TEXT NOT NULL,"
  "  topic TEXT NOT NULL,"
  "  partition INTEGER NOT NULL,"
  "  offset INTEGER NOT NULL,"
  "  key BLOB,"
  "  value BLOB NOT NULL,"
  "  headers BLOB,"
  "  timestamp INTEGER NOT NULL,"
  "  reason TEXT NOT NULL,"
  "  error TEXT NOT NULL,"
  "  traceback TEXT,"
  "  attempts INTEGER NOT NULL,"
  "  first_failure INTEGER NOT NULL,"
  "  last_failure INTEGER NOT NULL,"
  "  version TEXT,"
  "  dlq_topic TEXT,"
  "  quarantined_at INTEGER NOT NULL,"
  "  replayed_at INTEGER,"
  "  replays INTEGER NOT NULL DEFAULT 0);"
  "CREATE INDEX dlq_by_consumer ON dlq(consumer, seq);"
  TIMERS_SCHEMA
  CRASHES_SCHEMA
  "CREATE INDEX dlq_by_id ON dlq(id);";

int64_t eddy_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

unsigned eddy_store_round_robin(eddy_store *s) { return s->rr++; }
int64_t eddy_store_last_trim(const eddy_store *s) { return s->last_trim; }
void eddy_store_set_last_trim(eddy_store *s, int64_t ms) { s->last_trim = ms; }

const char *eddy_store_dir(const eddy_store *s) { return s->dir; }
const char *eddy_store_path(const eddy_store *s) { return s->path; }
const char *eddy_store_errmsg(const eddy_store *s) { return s->errmsg; }
int eddy_store_in_tx(const eddy_store *s) { return s->in_tx; }

int eddy_store_seterr(eddy_store *s, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof s->errmsg, fmt, ap);
  va_end(ap);
  s->last_code = code;
  return code;
}

/* Maps a SQLite result code to an eddy error code. */
static int map_sqlite(int rc) {
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED: return EDDY_ETIMEDOUT;
  case SQLITE_NOTADB:
  case SQLITE_CORRUPT: return EDDY_ENOTSTORE;
  case SQLITE_IOERR:
  case SQLITE_FULL:
  case SQLITE_CANTOPEN: return EDDY_EIO;
  case SQLITE_READONLY:
  case SQLITE_PERM:
  case SQLITE_AUTH: return EDDY_EACCES;
  case SQLITE_NOMEM: return EDDY_ENOMEM;
  case SQLITE_TOOBIG: return EDDY_ETOOBIG;
  default: return EDDY_ESTORE;
  }
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* 1 when path exists. */
static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* 1 when the file path with suffix appended exists. */
static int exists_beside(const char *path, const char *suffix) {
  char p[4200];
  snprintf(p, sizeof p, "%s%s", path, suffix);
  return exists(p);
}

int eddy_store_stale(const eddy_store *s) {
  if (!s->immutable) return 0;
  if (exists_beside(s->path, "-wal")) return 1;
  /* A writer that came and went checkpointed into the file. */
  struct stat st;
  if (stat(s->path, &st) != 0) return 1;
  return st.st_ino != s->opened.st_ino || st.st_size != s->opened.st_size ||
         st.st_mtim.tv_sec != s->opened.st_mtim.tv_sec ||
         st.st_mtim.tv_nsec != s->opened.st_mtim.tv_nsec;
}

/* What to do about a damaged store, after the sentence that says how. */
#define RESTORE "restore it from a backup, or save what is readable with sqlite3's .recover"

/* Says what is wrong with the file after SQLite found it corrupt or not a
 * database (rc): not SQLite at all, shorter than its header says, or
 * damaged inside.  Returns EDDY_ENOTSTORE. */
static int damaged(eddy_store *s, int rc) {
  unsigned char h[100];
  size_t n = 0;
  struct stat st;
  FILE *f = fopen(s->path, "rb");
  if (f) { n = fread(h, 1, sizeof h, f); fclose(f); }
  if (f && (n < 16 || memcmp(h, "SQLite format 3", 16) != 0))
    return eddy_store_seterr(s, EDDY_ENOTSTORE, "'%s' is not a database (it lacks "
                             "SQLite's header): restore the store from a backup, or "
                             "move the file away", s->path);
  if (n == sizeof h && stat(s->path, &st) == 0) {
    /* The page count in the header is valid when its change counter
     * matches (offsets 24 and 92).  A file shorter than that, with no
     * write-ahead log beside it when it was opened (one could hold the
     * rest, or a checkpoint be writing it), lost its end. */
    int64_t page = (int64_t)(h[16] << 8 | h[17]);
    if (page == 1) page = 65536;
    int64_t want = page * be32(h + 28);
    if (be32(h + 24) == be32(h + 92) && want > (int64_t)st.st_size && !s->had_wal)
      return eddy_store_seterr(s, EDDY_ENOTSTORE, "'%s' is damaged (truncated: %lld "
                               "bytes, its header says %lld): " RESTORE, s->path,
                               (long long)st.st_size, (long long)want);
  }
  return eddy_store_seterr(s, EDDY_ENOTSTORE, "'%s' is damaged (%s): " RESTORE,
                           s->path, sqlite3_errstr(rc));
}

int eddy_store_sqlerr(eddy_store *s, int rc, const char *what) {
  int code = map_sqlite(rc);
  if (code == EDDY_ETIMEDOUT)
    return eddy_store_seterr(s, code,
      "store '%s' is busy: gave up %s after waiting %d ms for another "
      "process to release its lock", s->dir, what, s->busy_timeout_ms);
  if (code == EDDY_ENOTSTORE) return damaged(s, rc);
  if ((rc & 0xff) == SQLITE_FULL)
    return eddy_store_seterr(s, code, "store '%s': disk full while %s", s->dir, what);
  return eddy_store_seterr(s, code, "store '%s': %s failed: %s", s->dir, what,
                           s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

sqlite3_stmt *eddy_store_stmt(eddy_store *s, const char *sql) {
  for (int i = 0; i < s->nstmt; i++) {
    if (s->stmt_sql[i] == sql) {
      sqlite3_reset(s->stmt[i]);
      sqlite3_clear_bindings(s->stmt[i]);
      return s->stmt[i];
    }
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
                              NULL);
  if (rc != SQLITE_OK) {
    eddy_store_sqlerr(s, rc, "preparing a statement");
    return NULL;
  }
  if (s->nstmt == STMT_CACHE) {
    /* The cache holds every statement eddy has: running out is a bug in
     * eddy, not a user error.  Evict the oldest rather than fail. */
    sqlite3_finalize(s->stmt[0]);
    memmove(&s->stmt[0], &s->stmt[1], sizeof s->stmt[0] * (STMT_CACHE - 1));
    memmove(&s->stmt_sql[0], &s->stmt_sql[1],
            sizeof s->stmt_sql[0] * (STMT_CACHE - 1));
    s->nstmt--;
  }
  s->stmt_sql[s->nstmt] = sql;
  s->stmt[s->nstmt++] = st;
  return st;
}

/* Runs sql; on failure the message says it failed while doing `what`. */
static int exec_as(eddy_store *s, const char *sql, const char *what) {
  sqlite3_stmt *st = eddy_store_stmt(s, sql);
  if (!st) return s->last_code;
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return eddy_store_sqlerr(s, rc, what);
  return 0;
}

int eddy_store_exec(eddy_store *s, const char *sql) {
  return exec_as(s, sql, sql);
}

int eddy_store_meta_get(eddy_store *s, const char *name, char *out, size_t n) {
  sqlite3_stmt *st = eddy_store_stmt(s, "SELECT value FROM meta WHERE name = ?1");
  if (!st) return s->last_code;
  sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (n) out[0] = 0;
  if (rc == SQLITE_ROW && n)
    snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return eddy_store_sqlerr(s, rc, "reading meta");
  return rc == SQLITE_ROW;
}

int eddy_store_meta_set(eddy_store *s, const char *name, const char *value) {
  int own = !s->in_tx;
  int rc = own ? eddy_store_begin(s) : 0;
  if (rc) return rc;
  sqlite3_stmt *st = eddy_store_stmt(s,
    "INSERT INTO meta(name, value) VALUES(?1, ?2)"
    " ON CONFLICT(name) DO UPDATE SET value = excluded.value");
  if (!st) rc = s->last_code;
  else {
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    sqlite3_reset(st);
    if (src != SQLITE_DONE) rc = eddy_store_sqlerr(s, src, "writing meta");
  }
  if (!own) return rc;
  if (rc) { eddy_store_rollback(s); return rc; }
  return eddy_store_commit(s);
}

int eddy_store_commits(eddy_store *s, int bump, int64_t *n) {
  sqlite3_stmt *st = eddy_store_stmt(s, bump
    ? "INSERT INTO meta(name, value) VALUES('commits', '1') ON CONFLICT(name)"
      " DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING CAST(value AS INTEGER)"
    : "SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'commits'");
  if (!st) return s->last_code;
  int rc = sqlite3_step(st);
  *n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_reset(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW)
    return eddy_store_sqlerr(s, rc, "counting commits");
  return 0;
}

int eddy_store_begin(eddy_store *s) {
  if (s->in_tx)
    return eddy_store_seterr(s, EDDY_EINVAL, "a transaction is already open");
  int rc = exec_as(s, "BEGIN IMMEDIATE", "writing");
  if (rc == 0) s->in_tx = 1;
  return rc;
}

int eddy_store_commit(eddy_store *s) {
  if (!s->in_tx)
    return eddy_store_seterr(s, EDDY_EINVAL, "no transaction is open");
  int rc = exec_as(s, "COMMIT", "committing");
  if (rc != 0) {
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  }
  s->in_tx = 0;
  return rc;
}

void eddy_store_rollback(eddy_store *s) {
  if (!s->in_tx) return;
  /* A failed statement may already have rolled the transaction back. */
  if (!sqlite3_get_autocommit(s->db))
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  s->in_tx = 0;
}

/* mkdir with mode 0700 whatever the umask (which could narrow it to
 * nothing).  Returns 0, or -1 with errno set (EEXIST when it exists). */
static int mkdir_private(const char *path) {
  if (mkdir(path, 0700) != 0) return -1;
  return chmod(path, 0700);
}

int eddy_private_mkdir(const char *path) {
  char *p = strdup(path);
  if (!p) return -1;
  for (char *c = p + 1; *c; c++) {
    if (*c != '/' || c[-1] == '/') continue;
    *c = '\0';
    if (mkdir_private(p) != 0 && errno != EEXIST) { int e = errno; free(p); errno = e; return -1; }
    *c = '/';
  }
  int rc = mkdir_private(p);
  int e = errno;
  free(p);
  if (rc != 0 && e != EEXIST) { errno = e; return -1; }
  return 0;
}

int eddy_private_open(const char *path, int flags) {
  flags &= ~(O_CREAT | O_EXCL);
  /* Create it, or open the one that exists; a file removed between the
   * two tries is created on the next round. */
  for (int tries = 0; tries < 16; tries++) {
    int fd = open(path, flags | O_CREAT | O_EXCL, 0600);
    if (fd >= 0) {
      if (fchmod(fd, 0600) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
      }
      return fd;
    }
    if (errno != EEXIST) return -1;
    fd = open(path, flags);
    if (fd >= 0 || errno != ENOENT) return fd;
  }
  return -1;
}

static int fail_open(char *err, size_t errlen, int code, const char *fmt, ...)
  __attribute__((format(printf, 4, 5)));
static int fail_open(char *err, size_t errlen, int code, const char *fmt, ...) {
  if (errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* Runs sql, retrying while SQLite answers busy without consulting the busy
 * handler (it does so for journal-mode changes and WAL recovery), for at
 * most the busy timeout. */
static int exec_retry(eddy_store *s, const char *sql) {
  int64_t deadline = mono_ms() + s->busy_timeout_ms;
  for (;;) {
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED) return rc;
    if (mono_ms() >= deadline) return rc;
    sleep_ms(5);
  }
}

/* 1 when the file at path starts with SQLite's magic string. */
static int has_sqlite_header(const char *path) {
  static const char magic[16] = "SQLite format 3";
  char head[16];
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  return n == sizeof head && memcmp(head, magic, sizeof magic) == 0;
}

/* Checks the file's identity, and creates the schema in an empty file.
 * Returns 0 or a code with the message in s->errmsg. */
/* Reads the file's application id, schema version and table count in one
 * statement, so from one snapshot: read separately, another process's
 * schema commit could fall between them. */
static int read_identity(sqlite3 *db, int64_t *appid, int64_t *version,
                         int64_t *tables) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db,
    "SELECT (SELECT application_id FROM pragma_application_id()),"
    " (SELECT user_version FROM pragma_user_version()),"
    " (SELECT count(*) FROM sqlite_schema)", -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *appid = sqlite3_column_int64(st, 0);
    *version = sqlite3_column_int64(st, 1);
    *tables = sqlite3_column_int64(st, 2);
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Checks the file's identity, and creates the schema in an empty file.
 * Returns 0 or a code with the message in s->errmsg. */
static int check_or_create(eddy_store *s, int create) {
  int64_t appid = 0, version = 0, tables = 0;
  int rc = read_identity(s->db, &appid, &version, &tables);
  if (rc != SQLITE_OK) return eddy_store_sqlerr(s, rc, "reading the store header");

  if (appid == 0 && version == 0 && tables == 0 && s->existing_size > 0 &&
      !has_sqlite_header(s->path))
    /* SQLite reads a file shorter than its header as an empty database:
     * but it is someone's file, not a new one. */
    return damaged(s, SQLITE_NOTADB);
  if (appid == 0 && version == 0 && tables == 0 && !create) {
    /* An empty file, and this caller makes no stores: another process may
     * be making it one right now (it holds the write lock until the schema
     * is in), or it is just empty. */
    if (!s->read_only) {
      rc = eddy_store_begin(s);
      if (rc) return rc;
      rc = read_identity(s->db, &appid, &version, &tables);
      eddy_store_rollback(s);
      if (rc != SQLITE_OK) return eddy_store_sqlerr(s, rc, "reading the store header");
    }
    if (appid == 0 && version == 0 && tables == 0)
      return eddy_store_seterr(s, EDDY_ENOENT, "no eddy store in '%s' ('%s' is empty)",
                               s->dir, s->path);
  }
  if (appid == 0 && version == 0 && tables == 0) {
    /* A new, empty file: make it ours.  Another process may be doing the
     * same: the write lock decides, and the loser finds the schema there.
     * The schema is written before the switch to WAL, so that it lands in
     * the main file: SQLite deletes a WAL it finds beside an empty main
     * file, and with it a first transaction written there. */
    rc = eddy_store_begin(s);
    if (rc) return rc;
    rc = read_identity(s->db, &appid, &version, &tables);
    if (rc == SQLITE_OK && appid == 0 && version == 0 && tables == 0) {
      char pragmas[160];
      snprintf(pragmas, sizeof pragmas,
               "PRAGMA application_id=%d; PRAGMA user_version=%d;",
               EDDY_APPLICATION_ID, EDDY_SCHEMA_VERSION);
      rc = sqlite3_exec(s->db, schema_v1, NULL, NULL, NULL);
      if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL);
      if (rc == SQLITE_OK) {
        char meta[200];
        snprintf(meta, sizeof meta,
                 "INSERT INTO meta(name, value) VALUES('created_at', '%lld')",
                 (long long)eddy_now_ms());
        rc = sqlite3_exec(s->db, meta, NULL, NULL, NULL);
      }
    }
    if (rc != SQLITE_OK) {
      int code = eddy_store_sqlerr(s, rc, "creating the store");
      eddy_store_rollback(s);
      return code;
    }
    rc = eddy_store_commit(s);
    if (rc) return rc;
    rc = read_identity(s->db, &appid, &version, &tables);
    if (rc != SQLITE_OK) return eddy_store_sqlerr(s, rc, "reading the store header");
  }
  if (appid != EDDY_APPLICATION_ID)
    return eddy_store_seterr(s, EDDY_ENOTSTORE,
      "'%s' is not an eddy store (it is a database of another program)",
      s->path);
  if (version > EDDY_SCHEMA_VERSION)
    return eddy_store_seterr(s, EDDY_ENEWER,
      "store '%s' was made by a newer eddy (schema version %lld; this eddy "
      "reads up to %d): upgrade eddy", s->dir, (long long)version,
      EDDY_SCHEMA_VERSION);
  if (version < 1)
    return eddy_store_seterr(s, EDDY_ENOTSTORE,
      "'%s' is not an eddy store (schema version %lld)", s->path,
      (long long)version);
  /* A read-only store stays as it is: a reader of an older one finds no
   * timers (which only eddy run reads). */
  if (s->read_only) return 0;
  rc = exec_retry(s, "PRAGMA journal_mode=WAL");
  if (rc != SQLITE_OK) return eddy_store_sqlerr(s, rc, "switching to WAL");
  rc = exec_retry(s, TIMERS_SCHEMA CRASHES_SCHEMA);
  if (rc != SQLITE_OK) return eddy_store_sqlerr(s, rc, "adding the timers and crashes tables");
  return 0;
}

/* SQLite counts every allocation in global statistics behind one mutex
 * that all threads share: workers that each own a connection then queue on
 * it.  eddy reads no memory statistics, so they are off.  This must happen
 * before SQLite initialises; if something in the process already used
 * SQLite, the call fails harmlessly and the default stays. */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;
static void configure_sqlite(void) {
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* The URI of path for a read-only open: "file:PATH?mode=ro", and
 * "&immutable=1" when immutable; bytes that mean something in a URI are
 * %-escaped.  Returns a malloc'd string, or NULL when out of memory. */
static char *read_only_uri(const char *path, int immutable) {
  char *u = malloc(3 * strlen(path) + 32);
  if (!u) return NULL;
  char *o = u + sprintf(u, "file:");
  for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
    if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
        (*c >= '0' && *c <= '9') || strchr("/._-~", *c))
      *o++ = (char)*c;
    else
      o += sprintf(o, "%%%02X", *c);
  }
  strcpy(o, immutable ? "?mode=ro&immutable=1" : "?mode=ro");
  return u;
}

/* 1 when errno says the process may not write (as opposed to: the file is
 * missing or something worse). */
static int cannot_write(int e) {
  return e == EACCES || e == EROFS || e == EPERM;
}

/* Checks the data directory, creating it (with its parents) when create
 * is set and it is missing.  Sets *ro_dir when it cannot be written but
 * may_read_only lets the store be read.  Returns 0 or a code with err. */
static int check_dir(const char *dir, int create, int may_read_only, int *ro_dir,
                     char *err, size_t errlen) {
  struct stat st;
  *ro_dir = 0;
  if (stat(dir, &st) != 0) {
    if (errno != ENOENT)
      return fail_open(err, errlen, EDDY_EIO, "cannot use data directory '%s': %s", dir,
                       strerror(errno));
    if (!create)
      return fail_open(err, errlen, EDDY_ENOENT,
                       "no eddy store in '%s' (the directory does not exist)", dir);
    if (eddy_private_mkdir(dir) != 0)
      return fail_open(err, errlen, errno == EACCES ? EDDY_EACCES : EDDY_EIO,
                       "cannot create data directory '%s': %s", dir, strerror(errno));
  } else if (!S_ISDIR(st.st_mode)) {
    return fail_open(err, errlen, EDDY_EINVAL, "data directory '%s' is not a directory", dir);
  }
  if (access(dir, W_OK | X_OK) == 0) return 0;
  if (!may_read_only || !cannot_write(errno))
    return fail_open(err, errlen, EDDY_EACCES, "data directory '%s' is not writable: %s",
                     dir, strerror(errno));
  if (access(dir, X_OK) != 0)
    return fail_open(err, errlen, EDDY_EACCES, "cannot read data directory '%s': %s", dir,
                     strerror(errno));
  *ro_dir = 1;
  return 0;
}

/* Checks the store file at path, creating it for its owner when create is
 * set and it is missing (SQLite would give it 0666 less the umask, and the
 * WAL and shm files, which it makes with the mode of this file, too).
 * Sets *ro when it cannot be written but may_read_only lets it be read,
 * and *size to its size before (-1: it did not exist).  Returns 0 or a
 * code with err. */
static int check_file(const char *dir, const char *path, int create, int may_read_only,
                      int *ro, int64_t *size, char *err, size_t errlen) {
  struct stat st;
  *size = -1;
  if (stat(path, &st) != 0) {
    if (!create) return fail_open(err, errlen, EDDY_ENOENT, "no eddy store in '%s'", dir);
    int fd = eddy_private_open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
      return fail_open(err, errlen, cannot_write(errno) ? EDDY_EACCES : EDDY_EIO,
                       "cannot create store '%s': %s", path, strerror(errno));
    close(fd);
    return 0;
  }
  if (!S_ISREG(st.st_mode))
    return fail_open(err, errlen, EDDY_ENOTSTORE,
                     "'%s' is not an eddy store (not a regular file)", path);
  *size = (int64_t)st.st_size;
  if (access(path, R_OK | W_OK) == 0) return 0;
  if (may_read_only && cannot_write(errno) && access(path, R_OK) == 0) {
    *ro = 1;
    return 0;
  }
  if (may_read_only)
    return fail_open(err, errlen, EDDY_EACCES, "cannot read store '%s': %s", path,
                     strerror(errno));
  return fail_open(err, errlen, EDDY_EACCES, "store '%s' is not writable: %s", path,
                   strerror(errno));
}

/* The URI to open a read-only store at path by, in *uri (malloc'd), and
 * whether it is opened as an immutable file.  In a directory it cannot
 * write, SQLite reads a WAL store only through the shared memory file of
 * a process that has it open (or had: one that died leaves both files);
 * with no WAL file there is no such process, and none can start: the file
 * is read as it is.  Returns 0 or a code with err. */
static int read_only_target(const char *dir, const char *path, int ro_dir, char **uri,
                            int *immutable, char *err, size_t errlen) {
  int wal = ro_dir && exists_beside(path, "-wal");
  if (wal && !exists_beside(path, "-shm"))
    return fail_open(err, errlen, EDDY_EACCES,
                     "store '%s' cannot be read in a read-only directory: its "
                     "eddy.db-wal has no eddy.db-shm beside it (open it once "
                     "where it can be written)", dir);
  *immutable = ro_dir && !wal;
  *uri = read_only_uri(path, *immutable);
  return *uri ? 0 : fail_open(err, errlen, EDDY_ENOMEM, "out of memory");
}

/* eddy_store_open, and eddy_store_open_read when may_read_only. */
static int store_open(const char *dir, const eddy_store_options *opts, int may_read_only,
                      eddy_store **out, char *err, size_t errlen) {
  *out = NULL;
  if (errlen) err[0] = '\0';
  if (!dir || !*dir)
    return fail_open(err, errlen, EDDY_EINVAL, "data directory is empty");
  int create = opts && opts->create && !may_read_only;
  int ro_dir, ro, immutable = 0;
  int code = check_dir(dir, create, may_read_only, &ro_dir, err, errlen);
  if (code) return code;
  ro = ro_dir;
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') n--;
  char *path = malloc(n + sizeof "/eddy.db");
  if (!path) return fail_open(err, errlen, EDDY_ENOMEM, "out of memory");
  memcpy(path, dir, n);
  memcpy(path + n, "/eddy.db", sizeof "/eddy.db");
  int64_t existing;
  char *uri = NULL;
  code = check_file(dir, path, create, may_read_only, &ro, &existing, err, errlen);
  if (code == 0 && ro) code = read_only_target(dir, path, ro_dir, &uri, &immutable, err, errlen);
  if (code) { free(path); return code; }
  eddy_store *s = calloc(1, sizeof *s);
  if (!s) { free(path); free(uri); return fail_open(err, errlen, EDDY_ENOMEM, "out of memory"); }
  s->existing_size = existing;
  s->path = path;
  s->read_only = ro;
  s->immutable = immutable && stat(path, &s->opened) == 0;
  s->had_wal = exists_beside(path, "-wal");
  s->rr = (unsigned)getpid() ^ (unsigned)eddy_now_ms();
  s->dir = strdup(dir);
  s->busy_timeout_ms = opts && opts->busy_timeout_ms > 0
                         ? opts->busy_timeout_ms : EDDY_DEFAULT_BUSY_TIMEOUT_MS;
  if (!s->dir) { code = EDDY_ENOMEM; snprintf(s->errmsg, sizeof s->errmsg, "out of memory"); goto err; }

  pthread_once(&sqlite_once, configure_sqlite);
  int flags = ro ? SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX
                 : SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(ro ? uri : path, &s->db, flags, NULL);
  free(uri);
  if (rc != SQLITE_OK) { code = eddy_store_sqlerr(s, rc, "opening the store"); goto err; }
  sqlite3_extended_result_codes(s->db, 1);
  sqlite3_busy_timeout(s->db, s->busy_timeout_ms);
  code = check_or_create(s, create);
  if (code) goto err;
  /* FULL: a commit survives power loss, not only a killed process.  It costs
   * one fsync per transaction, and eddy batches many messages per one. */
  /* A bigger page cache and memory-mapped reads: the hot pages of the log
   * and of the dedupe and state indexes stay in memory instead of coming
   * back through pread for every batch. */
  rc = sqlite3_exec(s->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;"
                    " PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456;"
                    " PRAGMA temp_store=MEMORY;", NULL, NULL, NULL);
  if (rc != SQLITE_OK) { code = eddy_store_sqlerr(s, rc, "setting pragmas"); goto err; }
  *out = s;
  return 0;

err:
  fail_open(err, errlen, code, "%s", s->errmsg);
  eddy_store_close(s);
  return code;
}

int eddy_store_open(const char *dir, const eddy_store_options *opts,
                    eddy_store **out, char *err, size_t errlen) {
  return store_open(dir, opts, 0, out, err, errlen);
}

int eddy_store_open_read(const char *dir, const eddy_store_options *opts,
                         eddy_store **out, char *err, size_t errlen) {
  return store_open(dir, opts, 1, out, err, errlen);
}

void eddy_store_close(eddy_store *s) {
  if (!s) return;
  eddy_store_rollback(s);
  for (int i = 0; i < s->nstmt; i++) sqlite3_finalize(s->stmt[i]);
  if (s->db) sqlite3_close_v2(s->db);
  free(s->dir);
  free(s->path);
  free(s);
}
