/*
 * store.h - the SQLite store under a data directory.
 *
 * One eddy_store is one SQLite connection to DIR/eddy.db, used by one thread
 * at a time.  Several processes may open the same store: SQLite's WAL mode
 * lets readers run beside one writer, and every write transaction starts with
 * BEGIN IMMEDIATE so that a writer waits (up to the busy timeout) for the
 * write lock instead of failing half-way.  A wait that runs out is
 * EDDY_ETIMEDOUT with a message that says so; "database is locked" never
 * reaches a user.
 *
 * The schema is documented in docs/store.md.
 */
#ifndef EDDY_STORE_H
#define EDDY_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct eddy_store eddy_store;
typedef struct sqlite3_stmt sqlite3_stmt;

/* The schema version this eddy writes and the newest one it can read. */
#define EDDY_SCHEMA_VERSION 1
/* SQLite application_id of an eddy store: "eddy" in ASCII. */
#define EDDY_APPLICATION_ID 0x65646479

#define EDDY_DEFAULT_BUSY_TIMEOUT_MS 10000

typedef struct eddy_store_options {
  int create;              /* create the directory and the store if missing */
  int busy_timeout_ms;     /* how long a write waits for the lock; 0: default */
} eddy_store_options;

/* Opens the store in directory dir (created with its parents when
 * opts->create is set).  On success returns 0 and sets *out to a store the
 * caller closes with eddy_store_close.  On failure returns a negative EDDY_E*
 * code, sets *out to NULL and writes a one-line message into err (errlen
 * bytes, always NUL-terminated when errlen > 0).  A file that is not an
 * eddy store, a damaged one, or a store of a newer schema, is reported and
 * left untouched; so is an empty file unless opts->create is set.
 *
 * What eddy creates is for the owner only, whatever the umask: the data
 * directory (and the parents it makes) 0700, eddy.db 0600, and SQLite gives
 * eddy.db-wal and eddy.db-shm the mode of eddy.db. */
int eddy_store_open(const char *dir, const eddy_store_options *opts,
                    eddy_store **out, char *err, size_t errlen);

/* Opens the store as eddy_store_open does, for a caller that only reads
 * (opts->create is ignored: nothing is created).  A store in a directory
 * the process cannot write, or whose eddy.db it cannot write, is opened
 * read-only instead of refused: through SQLite's read-only shared memory
 * when eddy.db-wal exists (a process has the store open, or died with it),
 * else as an immutable file (no process has it open).  Writes to such a
 * store fail with EDDY_EACCES. */
int eddy_store_open_read(const char *dir, const eddy_store_options *opts,
                         eddy_store **out, char *err, size_t errlen);

/* Closes the store, rolling back a transaction left open.  NULL is a no-op. */
void eddy_store_close(eddy_store *s);

/* 1 when the store was opened as an immutable file and a process has
 * written it since (its eddy.db-wal exists now, or eddy.db changed): this
 * handle sees none of that; a reader that keeps reading (tail --follow)
 * opens the store again. */
int eddy_store_stale(const eddy_store *s);

/* The data directory and the database file of the store. */
const char *eddy_store_dir(const eddy_store *s);
const char *eddy_store_path(const eddy_store *s);

/* The message of the last failure on this store ("" when none). */
const char *eddy_store_errmsg(const eddy_store *s);

/* Records a failure: formats the message (printf-style) into the store and
 * returns code, so that callers can write `return eddy_store_seterr(...)`. */
int eddy_store_seterr(eddy_store *s, int code, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

/* Records a failure of SQLite call that returned rc while doing `what`,
 * mapping it to an EDDY_E* code (busy -> EDDY_ETIMEDOUT, corrupt or not a
 * database -> EDDY_ENOTSTORE, I/O -> EDDY_EIO, ...) and keeping SQLite's own
 * text in the message.  Returns the code. */
int eddy_store_sqlerr(eddy_store *s, int rc, const char *what);

/* Starts a write transaction (BEGIN IMMEDIATE), waiting up to the busy
 * timeout for other writers.  Transactions do not nest: it is an error to
 * begin twice.  Returns 0 or a negative code. */
int eddy_store_begin(eddy_store *s);
/* Commits the open transaction.  On failure the transaction is rolled back
 * and the code returned. */
int eddy_store_commit(eddy_store *s);
/* Rolls back the open transaction, if any. */
void eddy_store_rollback(eddy_store *s);
/* 1 while a transaction opened by eddy_store_begin is open. */
int eddy_store_in_tx(const eddy_store *s);

/* The prepared statement for sql, which must be a string with static
 * storage (statements are cached by its address).  The statement is reset
 * and its bindings cleared.  Returns NULL after recording the error. */
sqlite3_stmt *eddy_store_stmt(eddy_store *s, const char *sql);

/* Runs sql (no results) through the cache.  Returns 0 or a code. */
int eddy_store_exec(eddy_store *s, const char *sql);

/* A fact about the store in table meta (name -> text): reads it into out
 * (1, or 0 when absent: out is ""), or sets it in a transaction of its own
 * (or in the open one).  Returns as said, or a negative code. */
int eddy_store_meta_get(eddy_store *s, const char *name, char *out, size_t n);
int eddy_store_meta_set(eddy_store *s, const char *name, const char *value);

/* The store's count of worker commits (meta row 'commits'), for telling a
 * process's own commits from those of another process sharing the store:
 * with bump (inside a write transaction) it adds one and returns the new
 * count, else it reads it (0 before the first).  Returns 0 or a code. */
int eddy_store_commits(eddy_store *s, int bump, int64_t *n);

/* The next value of the store's round-robin counter, which starts at a
 * random value so that processes spread unkeyed messages differently. */
unsigned eddy_store_round_robin(eddy_store *s);

/* When (eddy_now_ms) retention last ran through this handle; settable. */
int64_t eddy_store_last_trim(const eddy_store *s);
void eddy_store_set_last_trim(eddy_store *s, int64_t ms);

/* ---- files eddy makes ------------------------------------------------
 *
 * Everything eddy creates is private to its owner, whatever the umask.
 * Directories and files that exist already keep their mode: an operator
 * may open one up on purpose. */

/* Makes directory path, and its missing parents, with mode 0700.  Returns
 * 0 (also when it exists already), or -1 with errno set. */
int eddy_private_mkdir(const char *path);

/* Opens path with flags (O_CREAT is implied), creating it with mode 0600
 * when it does not exist.  Returns the descriptor, or -1 with errno set. */
int eddy_private_open(const char *path, int flags);

/* Milliseconds since the Unix epoch, from the real-time clock. */
int64_t eddy_now_ms(void);

#endif
