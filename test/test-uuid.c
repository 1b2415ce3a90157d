/*
 * test-uuid.c - UUIDv7 ids: their text, their order, their time field, and
 * the validators.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "uuid.h"

/* RFC 9562 appendix A example ids. */
#define RFC_V7       "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
#define RFC_V7_UPPER "017F22E2-79B0-7CC3-98C4-DC0C0C07398F"
#define RFC_V7_MS    1645557742000  /* 0x017f22e279b0, 2022-02-22 19:22:22Z */
#define RFC_V4       "919108f7-52d1-4320-9bac-f847db4148a8"

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when id is 36 characters of lower-case hex with dashes at 8, 13, 18,
 * 23, version nibble 7 and variant nibble in 89ab; 0 otherwise. */
static int is_v7_text(const char *id) {
  if (strlen(id) != EDDY_UUID_STRLEN)
    return 0;
  for (int i = 0; i < EDDY_UUID_STRLEN; i++) {
    char c = id[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-')
        return 0;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return 0;
    }
  }
  return id[14] == '7' && strchr("89ab", id[19]) != NULL;
}

TEST(uuid_v7_format) {
  char id[EDDY_UUID_STRLEN + 1];
  for (int i = 0; i < 1000; i++) {
    eddy_uuid_v7(id);
    ASSERT_EQ_INT(strlen(id), 36);
    ASSERT_EQ_INT(id[8], '-');
    ASSERT_EQ_INT(id[13], '-');
    ASSERT_EQ_INT(id[18], '-');
    ASSERT_EQ_INT(id[23], '-');
    ASSERT_EQ_INT(id[14], '7');
    ASSERT(strchr("89ab", id[19]) != NULL);
    ASSERT(is_v7_text(id));
    ASSERT(eddy_uuid_valid(id, strlen(id)));
  }
}

/* Far faster than 4096 ids per millisecond, so this also runs the counter
 * into overflow and the timestamp ahead of the clock. */
TEST(uuid_v7_strictly_increasing) {
  char prev[EDDY_UUID_STRLEN + 1], id[EDDY_UUID_STRLEN + 1];
  eddy_uuid_v7(prev);
  for (int i = 0; i < 100000; i++) {
    eddy_uuid_v7(id);
    ASSERT(strcmp(prev, id) < 0);
    memcpy(prev, id, sizeof id);
  }
}

#define THREADS 4
#define PER_THREAD 20000

struct maker {
  pthread_t thread;
  char (*ids)[EDDY_UUID_STRLEN + 1];  /* PER_THREAD of them */
  int in_order;                       /* 1 when each id sorted after the last */
};

static void *make_ids(void *arg) {
  struct maker *m = arg;
  m->in_order = 1;
  for (int i = 0; i < PER_THREAD; i++) {
    eddy_uuid_v7(m->ids[i]);
    if (i > 0 && strcmp(m->ids[i - 1], m->ids[i]) >= 0)
      m->in_order = 0;
  }
  return NULL;
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

TEST(uuid_v7_threads_unique) {
  struct maker makers[THREADS];
  char (*all)[EDDY_UUID_STRLEN + 1] = calloc(THREADS * PER_THREAD, sizeof *all);
  ASSERT(all != NULL);
  for (int t = 0; t < THREADS; t++) {
    makers[t].ids = all + t * PER_THREAD;
    ASSERT_EQ_INT(pthread_create(&makers[t].thread, NULL, make_ids, &makers[t]),
                  0);
  }
  int in_order = 1;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(makers[t].thread, NULL);
    in_order &= makers[t].in_order;
  }
  qsort(all, THREADS * PER_THREAD, sizeof *all, cmp_id);
  int duplicates = 0;
  for (int i = 1; i < THREADS * PER_THREAD; i++)
    duplicates += strcmp(all[i - 1], all[i]) == 0;
  free(all);
  ASSERT(in_order);
  ASSERT_EQ_INT(duplicates, 0);
}

/* A forked child inherits the generator's state; its next id must still
 * differ from the parent's next one (fresh random bits, see uuid.c). */
TEST(uuid_v7_fork_child_differs) {
  char parent[EDDY_UUID_STRLEN + 1], child[EDDY_UUID_STRLEN + 1] = "";
  int fds[2];
  eddy_uuid_v7(parent);  /* the pool now holds unused random bytes */
  ASSERT_EQ_INT(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    char id[EDDY_UUID_STRLEN + 1];
    eddy_uuid_v7(id);
    _exit(write(fds[1], id, EDDY_UUID_STRLEN) == EDDY_UUID_STRLEN ? 0 : 1);
  }
  eddy_uuid_v7(parent);
  close(fds[1]);
  ssize_t n = read(fds[0], child, EDDY_UUID_STRLEN);
  close(fds[0]);
  int status = 0;
  ASSERT_EQ_INT(waitpid(pid, &status, 0), pid);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ_INT(n, EDDY_UUID_STRLEN);
  child[EDDY_UUID_STRLEN] = '\0';
  ASSERT(is_v7_text(child));
  ASSERT(strcmp(parent, child) != 0);
}

TEST(uuid_v7_time_is_now) {
  char id[EDDY_UUID_STRLEN + 1];
  eddy_uuid_v7(id);
  int64_t last = eddy_uuid_v7_time(id);
  ASSERT(last > 0);
  /* A burst (uuid_v7_strictly_increasing) can leave the generator's
   * timestamp some milliseconds ahead of the clock, by design.  Wait, with
   * a deadline, until the clock has passed it: the next id then starts a
   * new millisecond and must carry the clock's time exactly. */
  int64_t deadline = wall_ms() + 2000;
  while (wall_ms() <= last)
    ASSERT(wall_ms() < deadline);
  int64_t before = wall_ms();
  eddy_uuid_v7(id);
  int64_t after = wall_ms();
  int64_t t = eddy_uuid_v7_time(id);
  ASSERT(t >= before);
  ASSERT(t <= after);
}

TEST(uuid_v7_time_rfc_vector) {
  ASSERT_EQ_INT(eddy_uuid_v7_time(RFC_V7), RFC_V7_MS);
  ASSERT_EQ_INT(eddy_uuid_v7_time(RFC_V7_UPPER), RFC_V7_MS);
  ASSERT_EQ_INT(eddy_uuid_v7_time("00000000-0000-7000-8000-000000000000"), 0);
  ASSERT_EQ_INT(eddy_uuid_v7_time("ffffffff-ffff-7fff-bfff-ffffffffffff"),
                INT64_C(0xffffffffffff));
}

TEST(uuid_v7_time_rejects_non_v7) {
  ASSERT_EQ_INT(eddy_uuid_v7_time(RFC_V4), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time("00000000-0000-0000-0000-000000000000"), -1);
  /* version 7 but not the RFC variant (10xx) */
  ASSERT_EQ_INT(eddy_uuid_v7_time("017f22e2-79b0-7cc3-08c4-dc0c0c07398f"), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time("017f22e2-79b0-7cc3-c8c4-dc0c0c07398f"), -1);
  /* garbage */
  ASSERT_EQ_INT(eddy_uuid_v7_time("hello"), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time(""), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time(NULL), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time(RFC_V7 "0"), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time("{" RFC_V7 "}"), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time("017f22e2x79b0-7cc3-98c4-dc0c0c07398f"), -1);
  ASSERT_EQ_INT(eddy_uuid_v7_time("017f22e279b07cc398c4dc0c0c07398f"), -1);
}

TEST(uuid_valid_accepts_either_case) {
  ASSERT(eddy_uuid_valid(RFC_V7, strlen(RFC_V7)));
  ASSERT(eddy_uuid_valid(RFC_V7_UPPER, strlen(RFC_V7_UPPER)));
  ASSERT(eddy_uuid_valid("017F22e2-79B0-7cC3-98c4-DC0c0c07398F", 36));
  ASSERT(eddy_uuid_valid(RFC_V4, strlen(RFC_V4)));
  ASSERT(eddy_uuid_valid("00000000-0000-0000-0000-000000000000", 36));
  /* only len bytes are read: no NUL needed, and what follows is ignored */
  char bare[36];
  memcpy(bare, RFC_V7, 36);
  ASSERT(eddy_uuid_valid(bare, sizeof bare));
  ASSERT(eddy_uuid_valid(RFC_V7 "trailing", 36));
}

TEST(uuid_valid_rejects_malformed) {
  /* wrong lengths */
  ASSERT(!eddy_uuid_valid(RFC_V7, 35));
  ASSERT(!eddy_uuid_valid(RFC_V7 "0", 37));
  ASSERT(!eddy_uuid_valid("", 0));
  ASSERT(!eddy_uuid_valid(NULL, 36));
  ASSERT(!eddy_uuid_valid("{" RFC_V7 "}", 38));
  /* missing dashes: the 32-digit form, and a dash replaced by a digit */
  ASSERT(!eddy_uuid_valid("017f22e279b07cc398c4dc0c0c07398f", 32));
  ASSERT(!eddy_uuid_valid("017f22e2079b0-7cc3-98c4-dc0c0c07398f", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b007cc3-98c4-dc0c0c07398f", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3098c4-dc0c0c07398f", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3-98c40dc0c0c07398f", 36));
  /* dashes in the wrong places */
  ASSERT(!eddy_uuid_valid("017f22e-279b0-7cc3-98c4-dc0c0c07398f", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3-98c4d-c0c0c07398f", 36));
  /* non-hex characters */
  ASSERT(!eddy_uuid_valid("017f22g2-79b0-7cc3-98c4-dc0c0c07398f", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3-98c4-dc0c0c07398 ", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3-98c4-dc0c0c07398G", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3-98c4-dc0c0c0739\xe9" "f", 36));
  ASSERT(!eddy_uuid_valid("017f22e2-79b0-7cc3-98c4-dc0c0c0739\0f", 36));
  ASSERT(!eddy_uuid_valid("------------------------------------", 36));
}
