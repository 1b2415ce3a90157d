/*
 * cli.h - the eddy command line: option parsing, help, dispatch, and the
 * commands themselves (one cli_<command>.c per command group).
 *
 * Exit status: 0 success, 1 failure (one line on stderr naming what went
 * wrong), 2 usage error (unknown command or option, a missing or malformed
 * argument).
 */
#ifndef EDDY_CLI_H
#define EDDY_CLI_H

#include <signal.h>
#include <stdint.h>

#include "store.h"

#define EDDY_EXIT_OK 0
#define EDDY_EXIT_FAIL 1
#define EDDY_EXIT_USAGE 2

/* Runs the command line; returns the process exit status. */
int eddy_cli_main(int argc, char **argv);

/* One option of a command.  name is the long name without dashes.  An
 * option may be given once: twice is a usage error ("option '--key' given
 * twice"), unless its help says "(repeatable", as --header's does, so that
 * the help always tells which options repeat. */
typedef struct eddy_cli_opt {
  const char *name;
  char short_name;
  const char *arg;    /* NULL: a flag; else the argument's name for help */
  const char *help;
} eddy_cli_opt;

typedef struct eddy_cli_cmd eddy_cli_cmd;

#define EDDY_CLI_MAX_SEEN 256
#define EDDY_CLI_MAX_POS 64

/* A parsed command line. */
typedef struct eddy_cli_args {
  const eddy_cli_cmd *cmd;
  int npos;
  const char *pos[EDDY_CLI_MAX_POS];
  int nseen;
  struct { const char *name; const char *value; } seen[EDDY_CLI_MAX_SEEN];
} eddy_cli_args;

struct eddy_cli_cmd {
  const char *name;        /* "topic create" */
  const char *usage;       /* "NAME --partitions N" */
  const char *summary;     /* one line */
  const char *details;     /* more text for --help, or NULL */
  const eddy_cli_opt *opts;  /* terminated by a zero entry */
  int min_pos, max_pos;    /* positional arguments accepted */
  int (*run)(const eddy_cli_args *a);
};

/* 1 when flag name was given. */
int eddy_cli_flag(const eddy_cli_args *a, const char *name);
/* The value given for option name, or NULL. */
const char *eddy_cli_value(const eddy_cli_args *a, const char *name);
/* The i-th value (from 0) given for a repeatable option, or NULL. */
const char *eddy_cli_nth(const eddy_cli_args *a, const char *name, int i);

/* Prints "eddy CMD: message" on stderr with a hint to --help, and returns
 * EDDY_EXIT_USAGE. */
int eddy_cli_usage_error(const eddy_cli_args *a, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
/* Prints "eddy CMD: message" on stderr and returns EDDY_EXIT_FAIL. */
int eddy_cli_fail(const eddy_cli_args *a, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* Options of the commands that also work on Kafka (--broker, --kafka). */
#define EDDY_CLI_KAFKA_OPTS \
  { "broker", 0, "URL", "work on the Kafka cluster kafka://HOST:PORT[,HOST:PORT...] instead of the data directory" }, \
  { "kafka", 'X', "NAME=VALUE", "a librdkafka property for --broker, e.g. security.protocol=SSL (repeatable)" }

struct eddy_kafka;
/* With --broker, connects to it (with the --kafka properties) and sets
 * *k; without, sets *k to NULL.  Returns 0, or an exit status after
 * printing why. */
int eddy_cli_kafka(const eddy_cli_args *a, struct eddy_kafka **k);
/* The same, with fallback (when not NULL or "") as the broker when no
 * --broker is given. */
int eddy_cli_kafka_or(const eddy_cli_args *a, const char *fallback, struct eddy_kafka **k);

/* The data directory: --data, else $EDDY_DATA, else ./data. */
const char *eddy_cli_data_dir(const eddy_cli_args *a);

/* Opens the store named by --data (default $EDDY_DATA, else ./data):
 * create 1 makes it when missing, 0 opens an existing one, and
 * EDDY_CLI_READ opens an existing one for a command that only reads, which
 * works in a directory it cannot write (eddy_store_open_read).  Prints the
 * error and returns NULL on failure. */
#define EDDY_CLI_READ 2
eddy_store *eddy_cli_open(const eddy_cli_args *a, int create);

/* Parses an integer option value; on a malformed value prints a usage error
 * and returns -1 (the caller returns EDDY_EXIT_USAGE). */
int eddy_cli_int(const eddy_cli_args *a, const char *name, int64_t min,
                 int64_t max, int64_t *v);

/* Runs the Lua command eddy.tools.<fn>(tool, opts) (cli_saga.c): opts
 * holds the positional arguments and the options named in opt_names; s,
 * when not NULL, is the store the tool functions read.  Returns the exit
 * status; a raised message is printed as the command's one-line error. */
struct eddy_store;
int eddy_cli_run_tool(const eddy_cli_args *a, const char *fn, struct eddy_store *s,
                      const char *const *opt_names);

/* Set by SIGINT/SIGTERM once eddy_cli_catch_signals ran: commands that
 * wait (tail --follow) poll it to stop cleanly. */
extern volatile sig_atomic_t eddy_cli_stop;
void eddy_cli_catch_signals(void);

struct eddy_buf;
struct eddy_message;
/* Appends one message as a JSON line (see eddy tail --help for the shape). */
void eddy_cli_message_json(struct eddy_buf *b, const struct eddy_message *m);

/* The commands, defined in cli_*.c. */
extern const eddy_cli_cmd eddy_cmd_topic_create, eddy_cmd_topic_list,
  eddy_cmd_topic_alter, eddy_cmd_topic_trim, eddy_cmd_produce, eddy_cmd_tail,
  eddy_cmd_run, eddy_cmd_dlq_list, eddy_cmd_dlq_show, eddy_cmd_dlq_replay,
  eddy_cmd_dlq_purge, eddy_cmd_state_get, eddy_cmd_state_list, eddy_cmd_reload,
  eddy_cmd_status, eddy_cmd_saga_list, eddy_cmd_saga_show, eddy_cmd_flows, eddy_cmd_trace,
  eddy_cmd_catalog_check, eddy_cmd_catalog_docs, eddy_cmd_catalog_export;

#endif
