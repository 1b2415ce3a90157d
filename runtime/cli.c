/*
 * cli.c - parsing, help and dispatch of the eddy command line.
 */
#include "cli.h"
#include "kafka.h"
#include "errors.h"
#include "units.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <sqlite3.h>
#include <uv.h>

#ifndef EDDY_VERSION
#define EDDY_VERSION "0.1.0-dev"
#endif

volatile sig_atomic_t eddy_cli_stop;

/* Options every command takes. */
static const eddy_cli_opt global_opts[] = {
  { "data", 'd', "DIR", "the data directory (default: $EDDY_DATA, else ./data)" },
  { "lock-timeout", 0, "MS", "how long to wait for another process's write lock (default 10000)" },
  { "help", 'h', NULL, "show this help" },
  { 0 }
};

static int cmd_version(const eddy_cli_args *a);
static const eddy_cli_opt no_opts[] = { { 0 } };
static const eddy_cli_cmd cmd_version_def = {
  "version", "", "print the versions of eddy and of the libraries it uses",
  NULL, no_opts, 0, 0, cmd_version
};
static int cmd_help(const eddy_cli_args *a);
static const eddy_cli_cmd cmd_help_def = {
  "help", "[COMMAND]", "show help for eddy or for one command", NULL,
  no_opts, 0, 2, cmd_help
};

static const eddy_cli_cmd *commands[] = {
  &eddy_cmd_topic_create, &eddy_cmd_topic_list, &eddy_cmd_topic_alter,
  &eddy_cmd_topic_trim, &eddy_cmd_produce, &eddy_cmd_tail, &eddy_cmd_run,
  &eddy_cmd_dlq_list, &eddy_cmd_dlq_show, &eddy_cmd_dlq_replay,
  &eddy_cmd_dlq_purge, &eddy_cmd_state_get, &eddy_cmd_state_list, &eddy_cmd_reload,
  &eddy_cmd_status, &eddy_cmd_saga_list, &eddy_cmd_saga_show, &eddy_cmd_flows,
  &eddy_cmd_trace, &eddy_cmd_catalog_check, &eddy_cmd_catalog_docs, &eddy_cmd_catalog_export,
  &cmd_version_def,
  &cmd_help_def, NULL
};

int eddy_cli_flag(const eddy_cli_args *a, const char *name) {
  for (int i = 0; i < a->nseen; i++)
    if (strcmp(a->seen[i].name, name) == 0) return 1;
  return 0;
}

const char *eddy_cli_value(const eddy_cli_args *a, const char *name) {
  const char *v = NULL;
  for (int i = 0; i < a->nseen; i++)
    if (strcmp(a->seen[i].name, name) == 0) v = a->seen[i].value;
  return v;
}

const char *eddy_cli_nth(const eddy_cli_args *a, const char *name, int n) {
  for (int i = 0; i < a->nseen; i++)
    if (strcmp(a->seen[i].name, name) == 0 && n-- == 0) return a->seen[i].value;
  return NULL;
}

static const char *cmd_name(const eddy_cli_args *a) {
  return a && a->cmd ? a->cmd->name : NULL;
}

int eddy_cli_usage_error(const eddy_cli_args *a, const char *fmt, ...) {
  const char *name = cmd_name(a);
  fprintf(stderr, name ? "eddy %s: " : "eddy: ", name);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (name) fprintf(stderr, " (see 'eddy %s --help')\n", name);
  else fprintf(stderr, " (see 'eddy --help')\n");
  return EDDY_EXIT_USAGE;
}

int eddy_cli_fail(const eddy_cli_args *a, const char *fmt, ...) {
  const char *name = cmd_name(a);
  fprintf(stderr, name ? "eddy %s: " : "eddy: ", name);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EDDY_EXIT_FAIL;
}

/* 1 when s is an optional '-' and digits: a whole number, maybe too big
 * for any range. */
static int all_digits(const char *s) {
  if (!s) return 0;
  if (*s == '-') s++;
  if (!*s) return 0;
  for (; *s; s++) if (*s < '0' || *s > '9') return 0;
  return 1;
}

int eddy_cli_int(const eddy_cli_args *a, const char *name, int64_t min,
                 int64_t max, int64_t *v) {
  const char *s = eddy_cli_value(a, name);
  if (eddy_parse_int(s, INT64_MIN + 1, INT64_MAX, v) != 0 && !all_digits(s)) {
    eddy_cli_usage_error(a, "--%s expects a whole number, got '%s'", name, s);
    return -1;
  }
  if (eddy_parse_int(s, min, max, v) != 0) {
    eddy_cli_usage_error(a, "--%s must be between %lld and %lld, got %s", name,
                         (long long)min, (long long)max, s);
    return -1;
  }
  return 0;
}

int eddy_cli_kafka(const eddy_cli_args *a, eddy_kafka **k) {
  return eddy_cli_kafka_or(a, NULL, k);
}

int eddy_cli_kafka_or(const eddy_cli_args *a, const char *fallback, eddy_kafka **k) {
  *k = NULL;
  const char *broker = eddy_cli_value(a, "broker");
  if (!broker && fallback && *fallback) broker = fallback;
  const char *props[2 * 64 + 1];
  int n = 0, rc = 0;
  const char *p;
  for (int i = 0; !rc && (p = eddy_cli_nth(a, "kafka", i)); i++) {
    const char *eq = strchr(p, '=');
    if (!eq || eq == p)
      rc = eddy_cli_usage_error(a, "--kafka '%s' is not NAME=VALUE", p);
    else if (!broker)
      rc = eddy_cli_usage_error(a, "--kafka needs --broker");
    else if (n == 2 * 64)
      rc = eddy_cli_usage_error(a, "too many --kafka properties (max 64)");
    else {
      props[n++] = strndup(p, (size_t)(eq - p));
      props[n++] = eq + 1;
    }
  }
  props[n] = NULL;
  char err[512];
  if (!rc && broker && eddy_kafka_open(broker, props, k, err, sizeof err) != 0)
    rc = eddy_cli_usage_error(a, "%s", err);
  for (int i = 0; i < n; i += 2) free((char *)props[i]);
  return rc;
}

const char *eddy_cli_data_dir(const eddy_cli_args *a) {
  const char *dir = eddy_cli_value(a, "data");
  if (!dir) dir = getenv("EDDY_DATA");
  if (!dir || !*dir) dir = "./data";
  return dir;
}

eddy_store *eddy_cli_open(const eddy_cli_args *a, int create) {
  const char *dir = eddy_cli_data_dir(a);
  eddy_store_options o = { create == 1, 0 };
  int64_t t;
  if (eddy_cli_value(a, "lock-timeout")) {
    /* Checked by eddy_cli_main already: a bad value is a usage error. */
    if (eddy_parse_int(eddy_cli_value(a, "lock-timeout"), 1, 3600000, &t) == 0)
      o.busy_timeout_ms = (int)t;
  }
  char err[512];
  eddy_store *s;
  int rc = create == EDDY_CLI_READ ? eddy_store_open_read(dir, &o, &s, err, sizeof err)
                                   : eddy_store_open(dir, &o, &s, err, sizeof err);
  if (rc != 0) {
    eddy_cli_fail(a, "%s", err);
    return NULL;
  }
  return s;
}

/* Levenshtein distance, for "did you mean".  Short strings only. */
static size_t distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63) return 64;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t cur = row[j];
      size_t sub = prev + (a[i - 1] != b[j - 1]);
      size_t del = row[j] + 1, ins = row[j - 1] + 1;
      row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
      prev = cur;
    }
  }
  return row[lb];
}

static const eddy_cli_opt *find_opt(const eddy_cli_cmd *c, const char *name,
                                    char short_name) {
  const eddy_cli_opt *lists[2] = { c->opts, global_opts };
  for (int l = 0; l < 2; l++)
    for (const eddy_cli_opt *o = lists[l]; o->name; o++)
      if (name ? strcmp(o->name, name) == 0
               : (short_name && o->short_name == short_name))
        return o;
  return NULL;
}

static const char *closest_opt(const eddy_cli_cmd *c, const char *name) {
  const eddy_cli_opt *lists[2] = { c->opts, global_opts };
  const char *best = NULL;
  size_t bestd = 3;
  for (int l = 0; l < 2; l++)
    for (const eddy_cli_opt *o = lists[l]; o->name; o++) {
      size_t d = distance(name, o->name);
      if (d < bestd) { bestd = d; best = o->name; }
    }
  return best;
}

static void print_opts(FILE *f, const eddy_cli_opt *opts) {
  for (const eddy_cli_opt *o = opts; o->name; o++) {
    char left[64];
    if (o->short_name)
      snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name,
               o->arg ? " " : "", o->arg ? o->arg : "");
    else
      snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "",
               o->arg ? o->arg : "");
    fprintf(f, "  %-28s %s\n", left, o->help);
  }
}

static void command_help(FILE *f, const eddy_cli_cmd *c) {
  fprintf(f, "Usage: eddy %s%s%s\n\n%c%s.\n", c->name, *c->usage ? " " : "",
          c->usage, c->summary[0] - ('a' - 'A') * (c->summary[0] >= 'a' && c->summary[0] <= 'z'),
          c->summary + 1);
  if (c->details) fprintf(f, "\n%s", c->details);
  if (c->opts[0].name) {
    fprintf(f, "\nOptions:\n");
    print_opts(f, c->opts);
  }
  fprintf(f, "\nCommon options:\n");
  print_opts(f, global_opts);
}

static void main_help(FILE *f) {
  fprintf(f,
    "eddy: event-driven systems as small Lua scripts, on an embedded event log or on Kafka\n"
    "\nUsage: eddy [--data DIR] COMMAND [ARGS]\n\nCommands:\n");
  for (int i = 0; commands[i]; i++)
    fprintf(f, "  %-14s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(f, "\nRun 'eddy COMMAND --help' for the options of a command.\n"
             "Exit status: 0 success, 1 failure, 2 usage error.\n");
}

static int cmd_help(const eddy_cli_args *a) {
  if (a->npos == 0) { main_help(stdout); return 0; }
  char name[64];
  snprintf(name, sizeof name, "%s%s%s", a->pos[0], a->npos > 1 ? " " : "",
           a->npos > 1 ? a->pos[1] : "");
  for (int i = 0; commands[i]; i++)
    if (strcmp(commands[i]->name, name) == 0) {
      command_help(stdout, commands[i]);
      return 0;
    }
  return eddy_cli_usage_error(NULL, "unknown command '%s'", name);
}

static int cmd_version(const eddy_cli_args *a) {
  (void)a;
  printf("eddy %s\n%s\nSQLite %s\nlibrdkafka %s\nlibuv %s\n", EDDY_VERSION,
         LUA_RELEASE, sqlite3_libversion(), rd_kafka_version_str(),
         uv_version_string());
  return 0;
}

/* Parses argv[i..] for command c into a.  Returns 0, or an exit status. */
static int parse(const eddy_cli_cmd *c, int argc, char **argv, int i,
                 eddy_cli_args *a) {
  a->cmd = c;
  int only_pos = 0;
  for (; i < argc; i++) {
    char *arg = argv[i];
    if (only_pos || arg[0] != '-' || strcmp(arg, "-") == 0) {
      if (a->npos == EDDY_CLI_MAX_POS)
        return eddy_cli_usage_error(a, "too many arguments (max %d)", EDDY_CLI_MAX_POS);
      a->pos[a->npos++] = arg;
      continue;
    }
    if (strcmp(arg, "--") == 0) { only_pos = 1; continue; }
    const eddy_cli_opt *o;
    const char *value = NULL;
    char name[64];
    if (arg[1] == '-') {
      const char *eq = strchr(arg + 2, '=');
      size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
      if (n >= sizeof name) n = sizeof name - 1;
      memcpy(name, arg + 2, n);
      name[n] = '\0';
      if (eq) value = eq + 1;
      o = find_opt(c, name, 0);
      if (!o) {
        const char *near = closest_opt(c, name);
        if (near)
          return eddy_cli_usage_error(a, "unknown option '--%s' (did you mean '--%s'?)",
                                      name, near);
        return eddy_cli_usage_error(a, "unknown option '--%s'", name);
      }
    } else {
      o = find_opt(c, NULL, arg[1]);
      if (!o || (arg[2] && !o->arg))
        return eddy_cli_usage_error(a, "unknown option '%s'", arg);
      if (arg[2]) value = arg + 2;
    }
    if (o->arg && !value) {
      if (i + 1 >= argc)
        return eddy_cli_usage_error(a, "option '--%s' needs a value (%s)",
                                    o->name, o->arg);
      value = argv[++i];
    } else if (!o->arg && value) {
      return eddy_cli_usage_error(a, "option '--%s' takes no value", o->name);
    }
    if (!strstr(o->help, "(repeatable") && eddy_cli_flag(a, o->name))
      return eddy_cli_usage_error(a, "option '--%s' given twice", o->name);
    if (a->nseen == EDDY_CLI_MAX_SEEN)
      return eddy_cli_usage_error(a, "too many options (max %d)", EDDY_CLI_MAX_SEEN);
    a->seen[a->nseen].name = o->name;
    a->seen[a->nseen++].value = value ? value : "";
  }
  return 0;
}

static const eddy_cli_cmd *find_cmd(int argc, char **argv, int *i) {
  if (*i >= argc) return NULL;
  for (int k = 0; commands[k]; k++) {
    const char *n = commands[k]->name;
    const char *sp = strchr(n, ' ');
    if (!sp) {
      if (strcmp(n, argv[*i]) == 0) { (*i)++; return commands[k]; }
    } else if (strncmp(n, argv[*i], (size_t)(sp - n)) == 0 &&
               argv[*i][sp - n] == '\0' && *i + 1 < argc &&
               strcmp(sp + 1, argv[*i + 1]) == 0) {
      *i += 2;
      return commands[k];
    }
  }
  return NULL;
}

static void on_signal(int sig) {
  (void)sig;
  eddy_cli_stop = 1;
}

void eddy_cli_catch_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int eddy_cli_main(int argc, char **argv) {
  /* Global options may come before the command: take them first. */
  eddy_cli_args pre;
  memset(&pre, 0, sizeof pre);
  int i = 1;
  while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "--") != 0) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      main_help(stdout);
      return 0;
    }
    if (strcmp(arg, "--version") == 0) return cmd_version(NULL);
    const char *name = NULL, *value = NULL;
    if (strcmp(arg, "--data") == 0 || strcmp(arg, "-d") == 0) name = "data";
    else if (strcmp(arg, "--lock-timeout") == 0) name = "lock-timeout";
    else if (strncmp(arg, "--data=", 7) == 0) { name = "data"; value = arg + 7; }
    else if (strncmp(arg, "--lock-timeout=", 15) == 0) { name = "lock-timeout"; value = arg + 15; }
    else return eddy_cli_usage_error(NULL, "unknown option '%s'", arg);
    if (!value) {
      if (i + 1 >= argc)
        return eddy_cli_usage_error(NULL, "option '--%s' needs a value", name);
      value = argv[++i];
    }
    if (eddy_cli_flag(&pre, name))
      return eddy_cli_usage_error(NULL, "option '--%s' given twice", name);
    pre.seen[pre.nseen].name = name;
    pre.seen[pre.nseen++].value = value;
    i++;
  }
  if (i >= argc) {
    main_help(stderr);
    return EDDY_EXIT_USAGE;
  }
  int at = i;
  const eddy_cli_cmd *c = find_cmd(argc, argv, &i);
  if (!c) {
    const char *best = NULL;
    size_t bestd = 3;
    char typed[64];
    snprintf(typed, sizeof typed, "%s%s%s", argv[at],
             at + 1 < argc && argv[at + 1][0] != '-' ? " " : "",
             at + 1 < argc && argv[at + 1][0] != '-' ? argv[at + 1] : "");
    for (int k = 0; commands[k]; k++) {
      size_t d = distance(typed, commands[k]->name);
      size_t d1 = distance(argv[at], commands[k]->name);
      if (d1 < d) d = d1;
      if (d < bestd) { bestd = d; best = commands[k]->name; }
    }
    if (strcmp(argv[at], "topic") == 0)
      return eddy_cli_usage_error(NULL, "'topic' needs a subcommand: create, list, alter or trim");
    if (strcmp(argv[at], "dlq") == 0)
      return eddy_cli_usage_error(NULL, "'dlq' needs a subcommand: list, show, replay or purge");
    if (strcmp(argv[at], "state") == 0)
      return eddy_cli_usage_error(NULL, "'state' needs a subcommand: get or list");
    if (best)
      return eddy_cli_usage_error(NULL, "unknown command '%s' (did you mean '%s'?)",
                                  argv[at], best);
    return eddy_cli_usage_error(NULL, "unknown command '%s'", argv[at]);
  }
  eddy_cli_args a;
  memset(&a, 0, sizeof a);
  memcpy(a.seen, pre.seen, sizeof pre.seen[0] * (size_t)pre.nseen);
  a.nseen = pre.nseen;
  int rc = parse(c, argc, argv, i, &a);
  if (rc) return rc;
  if (eddy_cli_flag(&a, "help")) {
    command_help(stdout, c);
    return 0;
  }
  int64_t t;
  if (eddy_cli_value(&a, "lock-timeout") &&
      eddy_cli_int(&a, "lock-timeout", 1, 3600000, &t) != 0)
    return EDDY_EXIT_USAGE;
  if (a.npos < c->min_pos)
    return eddy_cli_usage_error(&a, "missing argument (usage: eddy %s %s)",
                                c->name, c->usage);
  if (a.npos > c->max_pos)
    return eddy_cli_usage_error(&a, "unexpected argument '%s'", a.pos[c->max_pos]);
  return c->run(&a);
}
