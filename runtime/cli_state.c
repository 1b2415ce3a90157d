/*
 * cli_state.c - eddy state get | list: consumers' state, read-only.
 */
#include "cli.h"
#include "buf.h"
#include "errors.h"
#include "state.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int run_get(const eddy_cli_args *a) {
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  int64_t id;
  eddy_buf v = EDDY_BUF_INIT;
  int rc = eddy_consumer_lookup(s, a->pos[0], &id);
  if (rc == 0) {
    rc = eddy_state_get(s, id, a->pos[1], strlen(a->pos[1]), &v);
    if (rc == 1) {
      printf("%s\n", v.data);
      rc = 0;
    } else if (rc == 0) {
      rc = eddy_cli_fail(a, "consumer '%s' has no state '%s'", a->pos[0], a->pos[1]);
      goto done;
    }
  }
  if (rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
done:
  eddy_buf_free(&v);
  eddy_store_close(s);
  return rc;
}

const eddy_cli_cmd eddy_cmd_state_get = {
  "state get", "CONSUMER KEY", "print one state value of a consumer, as JSON",
  NULL, (const eddy_cli_opt[]){ { 0 } }, 2, 2, run_get
};

struct list_ctx { int json; eddy_buf b; };

static int list_one(void *ud, const char *key, size_t key_len, const char *value,
                    size_t value_len, int64_t updated_at) {
  struct list_ctx *c = ud;
  eddy_buf_reset(&c->b);
  if (c->json) {
    eddy_buf_puts(&c->b, "{\"key\":");
    if (eddy_utf8_valid(key, key_len)) {
      eddy_buf_json_str(&c->b, key, key_len);
    } else {
      /* Keys are bytes: one that is not UTF-8 goes as base64, flagged. */
      eddy_buf_puts(&c->b, "\"");
      eddy_buf_base64(&c->b, key, key_len);
      eddy_buf_puts(&c->b, "\",\"key_encoding\":\"base64\"");
    }
    eddy_buf_puts(&c->b, ",\"value\":");
    eddy_buf_add(&c->b, value, value_len);
    eddy_buf_printf(&c->b, ",\"updated_at\":%" PRId64 "}\n", updated_at);
  } else {
    eddy_buf_add(&c->b, key, key_len);
    eddy_buf_puts(&c->b, "\t");
    eddy_buf_add(&c->b, value, value_len);
    eddy_buf_puts(&c->b, "\n");
  }
  fwrite(c->b.data, 1, c->b.len, stdout);
  return 0;
}

/* Reads an entry without printing it: the listing's first pass. */
static int check_one(void *ud, const char *key, size_t key_len, const char *value,
                     size_t value_len, int64_t updated_at) {
  (void)ud; (void)key; (void)key_len; (void)value; (void)value_len; (void)updated_at;
  return 0;
}

static int run_list(const eddy_cli_args *a) {
  eddy_store *s = eddy_cli_open(a, EDDY_CLI_READ);
  if (!s) return EDDY_EXIT_FAIL;
  int64_t id;
  struct list_ctx c = { eddy_cli_flag(a, "json"), EDDY_BUF_INIT };
  int rc = eddy_consumer_lookup(s, a->pos[0], &id);
  /* Read through once before printing, so that a store that fails
   * part-way (damaged) prints its error alone, not half a listing. */
  if (rc == 0) rc = eddy_state_foreach(s, id, check_one, NULL);
  if (rc == 0) rc = eddy_state_foreach(s, id, list_one, &c);
  if (rc) rc = eddy_cli_fail(a, "%s", eddy_store_errmsg(s));
  eddy_buf_free(&c.b);
  eddy_store_close(s);
  return rc;
}

static const eddy_cli_opt list_opts[] = {
  { "json", 'j', NULL, "one JSON object per line: key, value, updated_at" },
  { 0 }
};

const eddy_cli_cmd eddy_cmd_state_list = {
  "state list", "CONSUMER [--json]", "list a consumer's state: KEY<tab>VALUE per line",
  NULL, list_opts, 1, 1, run_list
};
