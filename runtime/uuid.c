/*
 * uuid.c - UUIDv7 message ids (RFC 9562, "Method 1": a counter in rand_a).
 *
 * Layout of the 16 bytes, big-endian:
 *   0-5   unix_ts_ms   48-bit Unix time in milliseconds
 *   6-7   ver | rand_a 4-bit version 7, then a 12-bit counter
 *   8-15  var | rand_b 2-bit variant 10, then 62 random bits
 *
 * Monotonicity: (unix_ts_ms, counter) strictly increases from one id to the
 * next within the process, so ids sort in the order they were made, as bytes
 * and as lower-case text.  In a new millisecond the counter restarts at a
 * random value with its top bit clear, which leaves room for at least 2048
 * more ids in that millisecond.  When the counter overflows, the timestamp is
 * advanced by one: a burst faster than ~2-4 ids per microsecond makes the
 * timestamps run ahead of the clock until the clock catches up.  When the
 * clock goes backwards, the last timestamp is kept and the counter goes on.
 *
 * State is process-wide (the promise is per process) and under one mutex;
 * the critical section is a few dozen instructions plus, once every
 * POOL_SIZE / 8 ids or so, one getrandom(2) to refill a pool of random bytes.
 * A fork(2) child starts with an empty pool, so parent and child never hand
 * out the same random bits.
 */
#include "uuid.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define POOL_SIZE     256
#define COUNTER_MAX   0xfffu
#define COUNTER_SEED  0x7ffu  /* mask for a new millisecond's first counter */
#define TS_MASK       0xffffffffffffull  /* 48 bits: good until year 10889 */

static struct {
  pthread_mutex_t lock;
  uint64_t last_ms;               /* timestamp of the last id made */
  uint32_t counter;               /* rand_a of the last id made */
  unsigned char pool[POOL_SIZE];  /* random bytes, consumed from pool_used */
  size_t pool_used;               /* POOL_SIZE means empty */
  uint64_t fallback;              /* splitmix64 state, see pool_refill() */
} gen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, {0}, POOL_SIZE, 0};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Around fork(): hold the lock so the child never inherits it held by a
 * thread that does not exist there, and empty the child's pool so it does
 * not repeat the parent's random bits. */
static void atfork_prepare(void) { pthread_mutex_lock(&gen.lock); }
static void atfork_parent(void) { pthread_mutex_unlock(&gen.lock); }
static void atfork_child(void) {
  gen.pool_used = POOL_SIZE;
  pthread_mutex_unlock(&gen.lock);
}
static void atfork_register(void) {
  /* Fails only with ENOMEM; the ids stay unique per process then, only a
   * child's first ids could repeat its parent's random bits. */
  (void)pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Refills the pool from getrandom(2).  If the kernel has no getrandom
 * (ENOSYS, or a seccomp filter refuses it), eddy must not abort over a
 * message id: the rest is filled from splitmix64 seeded with the clock and
 * the pid.  Ids stay strictly increasing and unique within the process;
 * only uniqueness across processes then rests on weaker randomness. */
static void pool_refill(void) {
  size_t got = 0;
  while (got < POOL_SIZE) {
    ssize_t n = getrandom(gen.pool + got, POOL_SIZE - got, 0);
    if (n > 0) {
      got += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      gen.fallback ^= (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
      gen.fallback ^= (uint64_t)getpid() << 32;
      while (got < POOL_SIZE) {
        uint64_t r = splitmix64(&gen.fallback);
        size_t n8 = POOL_SIZE - got < 8 ? POOL_SIZE - got : 8;
        memcpy(gen.pool + got, &r, n8);
        got += n8;
      }
    }
  }
  gen.pool_used = 0;
}

/* Copies n (<= POOL_SIZE) random bytes to dst.  Call with gen.lock held. */
static void random_bytes(unsigned char *dst, size_t n) {
  if (POOL_SIZE - gen.pool_used < n)
    pool_refill();
  memcpy(dst, gen.pool + gen.pool_used, n);
  gen.pool_used += n;
}

/* A new millisecond's first counter.  Call with gen.lock held. */
static uint32_t counter_seed(void) {
  unsigned char r[2];
  random_bytes(r, 2);
  return ((uint32_t)r[0] << 8 | r[1]) & COUNTER_SEED;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec < 0)  /* a clock set before 1970: treat as 1970 */
    return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Value of one hex digit (either case), or -1. */
static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Writes a new UUIDv7 into out[37]: 36 lower-case hex-and-dash characters
 * and a NUL.  Every id made in this process sorts (strcmp or memcmp of the
 * bytes) after every id made before it, from any thread.  Never fails and
 * allocates nothing; see the top of this file for the counter's limits. */
void eddy_uuid_v7(char out[EDDY_UUID_STRLEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char b[16];
  uint64_t ms;
  uint32_t counter;
  uint64_t now = now_ms();

  pthread_once(&atfork_once, atfork_register);
  pthread_mutex_lock(&gen.lock);
  if (now > gen.last_ms) {
    gen.last_ms = now;
    gen.counter = counter_seed();
  } else if (gen.counter < COUNTER_MAX) {
    /* Same millisecond, or the clock went back: keep the last timestamp. */
    gen.counter++;
  } else {
    gen.last_ms++;
    gen.counter = counter_seed();
  }
  ms = gen.last_ms & TS_MASK;
  counter = gen.counter;
  random_bytes(b + 8, 8);
  pthread_mutex_unlock(&gen.lock);

  for (int i = 0; i < 6; i++)
    b[i] = (unsigned char)(ms >> (40 - 8 * i));
  b[6] = (unsigned char)(0x70u | counter >> 8);
  b[7] = (unsigned char)(counter & 0xffu);
  b[8] = (unsigned char)(0x80u | (b[8] & 0x3fu));

  char *o = out;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *o++ = '-';
    *o++ = hex[b[i] >> 4];
    *o++ = hex[b[i] & 0x0f];
  }
  *o = '\0';
}

/* The unix_ts_ms field of a UUIDv7 in canonical text (either case): the
 * time, in milliseconds since 1970, when the id was made.  Returns -1 when s
 * is NULL, not canonical text (see eddy_uuid_valid), not version 7, or not
 * of the RFC 9562 variant (10xx), since only that variant has versions.
 * s must be NUL-terminated; at most 37 bytes of it are read. */
int64_t eddy_uuid_v7_time(const char *s) {
  if (s == NULL)
    return -1;
  if (!eddy_uuid_valid(s, strnlen(s, EDDY_UUID_STRLEN + 1)))
    return -1;
  int variant = hexval(s[19]);
  if (s[14] != '7' || variant < 8 || variant > 11)
    return -1;
  int64_t ms = 0;
  for (int i = 0; i < 13; i++) {
    if (i == 8)
      continue;  /* the dash between the 8 and the 4 digits */
    ms = ms << 4 | hexval(s[i]);
  }
  return ms;
}

/* 1 when the len bytes at s are a UUID in canonical 8-4-4-4-12 text form
 * (hex digits in either case, dashes at 8, 13, 18 and 23), 0 otherwise,
 * including when s is NULL.  Checks the form only, not version or variant.
 * Reads at most len bytes; s needs no NUL. */
int eddy_uuid_valid(const char *s, size_t len) {
  if (s == NULL || len != EDDY_UUID_STRLEN)
    return 0;
  for (size_t i = 0; i < len; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-')
        return 0;
    } else if (hexval(s[i]) < 0) {
      return 0;
    }
  }
  return 1;
}
