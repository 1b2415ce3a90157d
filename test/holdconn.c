/*
 * holdconn.c - a socket client for the specs (built as $BUILD/holdconn).
 *
 *   holdconn ADDRESS COUNT SECONDS [HEX]
 *
 * ADDRESS is tcp:HOST:PORT (IPv4) or unix:PATH.  Opens COUNT connections to
 * it one after the other, writes the bytes HEX spells (hex digits, two per
 * byte; none when absent) on each, prints "open COUNT", then reads every
 * connection without ever writing again, until the server closes it:
 *
 *   closed I MS HEX     connection I (from 1) was closed by the server MS
 *                       milliseconds after it connected, having received
 *                       the bytes HEX ("-" for none);
 *   reset I MS HEX      the same, closed with a reset.
 *
 * It exits 0 once every connection is closed, or after SECONDS with the
 * line "timeout N" (N: the connections still open); 1 with "error ..." when
 * a connection cannot be made.  Each line is flushed as it is printed.
 *
 * Lua has no sockets: this is what lets a spec hold hundreds of connections
 * that send nothing, or half a request, and see when the server lets go.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define KEEP 65536   /* bytes kept of what each connection receives */

typedef struct peer {
  int fd;
  int64_t opened;   /* ms */
  unsigned char *got;
  size_t len;
} peer;

static int64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int unhex(const char *s, unsigned char **out, size_t *n) {
  size_t len = strlen(s);
  if (len % 2) return -1;
  unsigned char *b = malloc(len / 2 + 1);
  if (!b) return -1;
  for (size_t i = 0; i < len / 2; i++) {
    unsigned v;
    if (sscanf(s + 2 * i, "%2x", &v) != 1) { free(b); return -1; }
    b[i] = (unsigned char)v;
  }
  *out = b;
  *n = len / 2;
  return 0;
}

/* A connected socket to address, or -1 with errno. */
static int dial(const char *address) {
  if (strncmp(address, "unix:", 5) == 0) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    if (strlen(address + 5) >= sizeof a.sun_path) { errno = ENAMETOOLONG; return -1; }
    strcpy(a.sun_path, address + 5);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    return fd;
  }
  if (strncmp(address, "tcp:", 4) != 0) { errno = EINVAL; return -1; }
  char host[64];
  const char *colon = strrchr(address + 4, ':');
  if (!colon || (size_t)(colon - address - 4) >= sizeof host) { errno = EINVAL; return -1; }
  memcpy(host, address + 4, (size_t)(colon - address - 4));
  host[colon - address - 4] = 0;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { errno = EINVAL; return -1; }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
  return fd;
}

static void report(const char *what, int i, const peer *p) {
  printf("%s %d %lld ", what, i + 1, (long long)(now_ms() - p->opened));
  if (p->len == 0) fputs("-", stdout);
  for (size_t k = 0; k < p->len; k++) printf("%02x", p->got[k]);
  putchar('\n');
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5) {
    fprintf(stderr, "usage: holdconn tcp:HOST:PORT|unix:PATH COUNT SECONDS [HEX]\n");
    return 2;
  }
  int count = atoi(argv[2]);
  int64_t deadline = now_ms() + (int64_t)atoi(argv[3]) * 1000;
  unsigned char *data = NULL;
  size_t dlen = 0;
  if (count < 1 || (argc == 5 && unhex(argv[4], &data, &dlen) != 0)) {
    fprintf(stderr, "holdconn: bad COUNT or HEX\n");
    return 2;
  }
  peer *peers = calloc((size_t)count, sizeof *peers);
  struct pollfd *fds = calloc((size_t)count, sizeof *fds);
  if (!peers || !fds) return 2;
  for (int i = 0; i < count; i++) {
    peers[i].fd = dial(argv[1]);
    if (peers[i].fd < 0) {
      printf("error connect %d: %s\n", i + 1, strerror(errno));
      return 1;
    }
    peers[i].opened = now_ms();
    if (dlen && write(peers[i].fd, data, dlen) != (ssize_t)dlen) {
      printf("error write %d: %s\n", i + 1, strerror(errno));
      return 1;
    }
  }
  printf("open %d\n", count);
  fflush(stdout);
  int open = count;
  unsigned char buf[4096];
  while (open > 0) {
    int left = (int)(deadline - now_ms());
    if (left <= 0) break;
    for (int i = 0; i < count; i++) {
      fds[i].fd = peers[i].fd;
      fds[i].events = POLLIN;
      fds[i].revents = 0;
    }
    int n = poll(fds, (nfds_t)count, left);
    if (n < 0 && errno != EINTR) { printf("error poll: %s\n", strerror(errno)); return 1; }
    for (int i = 0; n > 0 && i < count; i++) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      ssize_t r = read(peers[i].fd, buf, sizeof buf);
      if (r > 0) {
        size_t keep = peers[i].len + (size_t)r > KEEP ? KEEP - peers[i].len : (size_t)r;
        unsigned char *g = realloc(peers[i].got, peers[i].len + keep + 1);
        if (!g) return 2;
        memcpy(g + peers[i].len, buf, keep);
        peers[i].got = g;
        peers[i].len += keep;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      report(r == 0 ? "closed" : "reset", i, &peers[i]);
      close(peers[i].fd);
      peers[i].fd = -1;
      open--;
    }
  }
  if (open > 0) {
    printf("timeout %d\n", open);
    fflush(stdout);
  }
  for (int i = 0; i < count; i++) {
    if (peers[i].fd >= 0) close(peers[i].fd);
    free(peers[i].got);
  }
  free(peers);
  free(fds);
  free(data);
  return 0;
}
