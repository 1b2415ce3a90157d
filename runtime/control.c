/*
 * control.c - the control socket of a running `eddy run` (see control.h).
 */
#include "control.h"
#include "connset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The limits: eddy's own client connects, writes its line and reads, all
 * at once; a client that does not is closed, so that hundreds of them
 * never stop `eddy status` or `eddy reload` (connset.h). */
#define MAX_REQUEST 64            /* bytes of a request line, its LF included */
#define MAX_CLIENTS 32
#define REQUEST_TIMEOUT_MS 5000   /* from accept to the request line */
#define WRITE_TIMEOUT_MS 5000     /* to take the answer */

typedef struct client {
  eddy_conn link;           /* first: the set hands back &link */
  uv_pipe_t pipe;
  struct eddy_control *ctl; /* NULL once the server stopped */
  char buf[MAX_REQUEST];
  size_t len;
  int answered;             /* the handler has the request */
} client;

struct eddy_control {
  uv_pipe_t server;
  eddy_connset clients;
  int handles;              /* the server's and the timer's, until closed */
  int dirfd;
  char name[32];            /* PID.sock */
  eddy_control_handler fn;
  void *ud;
};

/* A path to name in directory fd that fits a socket address. */
static void short_path(char *out, size_t n, int dirfd, const char *name) {
  snprintf(out, n, "/proc/self/fd/%d/%s", dirfd, name);
}

static void client_closed(uv_handle_t *h) { free(h->data); }

static void close_client(client *c) {
  if (c->ctl) eddy_connset_remove(&c->ctl->clients, &c->link);
  if (!uv_is_closing((uv_handle_t *)&c->pipe)) uv_close((uv_handle_t *)&c->pipe, client_closed);
}

static void on_expire(eddy_conn *link, void *ud) {
  (void)ud;
  close_client((client *)link);
}

static void on_written(uv_write_t *req, int status) {
  (void)status;
  client *c = req->data;
  free(req);
  close_client(c);
}

void eddy_control_reply(void *cl, const char *text, size_t len) {
  client *c = cl;
  if (!c->ctl) {            /* the server stopped meanwhile */
    close_client(c);
    return;
  }
  eddy_connset_set(&c->ctl->clients, &c->link, WRITE_TIMEOUT_MS, 0);
  uv_write_t *req = malloc(sizeof *req + len);
  if (!req) { close_client(c); return; }
  char *copy = (char *)(req + 1);
  memcpy(copy, text, len);
  uv_buf_t b = uv_buf_init(copy, (unsigned)len);
  req->data = c;
  if (uv_write(req, (uv_stream_t *)&c->pipe, &b, 1, on_written) != 0) {
    free(req);
    close_client(c);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  client *c = h->data;
  buf->base = c->buf + c->len;
  buf->len = sizeof c->buf - c->len - 1;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  client *c = s->data;
  if (n < 0) {
    if (!c->answered) close_client(c);
    return;
  }
  if (n == 0 || c->answered) return;
  c->len += (size_t)n;
  c->buf[c->len] = 0;
  char *nl = memchr(c->buf, '\n', c->len);
  if (!nl && c->len < sizeof c->buf - 1) return;
  uv_read_stop(s);
  c->answered = 1;
  if (!nl) {
    static const char too_long[] = "error request line too long\n";
    eddy_control_reply(c, too_long, sizeof too_long - 1);
    return;
  }
  *nl = 0;
  /* Answering may wait for a reload: no deadline meanwhile, and the
   * client is not one to evict. */
  eddy_connset_set(&c->ctl->clients, &c->link, 0, 0);
  c->ctl->fn(c->ctl->ud, c->buf, c);
}

static void on_connection(uv_stream_t *server, int status) {
  eddy_control *ctl = server->data;
  if (status < 0) return;
  client *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_pipe_init(server->loop, &c->pipe, 0);
  c->pipe.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
    close_client(c);
    return;
  }
  if (eddy_connset_room(&ctl->clients) != 0) {
    char busy[64];
    int n = snprintf(busy, sizeof busy, "error busy: %d requests in progress\n", MAX_CLIENTS);
    uv_buf_t b = uv_buf_init(busy, (unsigned)n);
    (void)uv_try_write((uv_stream_t *)&c->pipe, &b, 1);
    close_client(c);
    return;
  }
  c->ctl = ctl;
  eddy_connset_add(&ctl->clients, &c->link, REQUEST_TIMEOUT_MS, 1);
  if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) != 0) close_client(c);
}

/* The server's handles: ctl goes with the last. */
static void release(eddy_control *ctl) {
  if (--ctl->handles == 0) free(ctl);
}

static void server_closed(uv_handle_t *h) { release(h->data); }
static void timer_closed(uv_handle_t *h) { release(((eddy_connset *)h->data)->ud); }

int eddy_control_start(uv_loop_t *loop, const char *data_dir, eddy_control_handler fn,
                       void *ud, eddy_control **out, char *err, size_t errlen) {
  *out = NULL;
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/control", data_dir);
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot create '%s': %s", dir, strerror(errno));
    return -1;
  }
  eddy_control *ctl = calloc(1, sizeof *ctl);
  if (!ctl) { snprintf(err, errlen, "out of memory"); return -1; }
  ctl->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  /* The owner's alone, whatever the umask or an older eddy made it: the
   * socket is bound in there before it can be made 0600. */
  if (ctl->dirfd < 0 || fchmod(ctl->dirfd, 0700) != 0) {
    snprintf(err, errlen, "cannot %s '%s': %s", ctl->dirfd < 0 ? "open" : "chmod", dir,
             strerror(errno));
    if (ctl->dirfd >= 0) close(ctl->dirfd);
    free(ctl);
    return -1;
  }
  ctl->fn = fn;
  ctl->ud = ud;
  snprintf(ctl->name, sizeof ctl->name, "%ld.sock", (long)getpid());
  /* Bound under a temporary name and renamed once it listens: a client
   * that found the socket before it listened would take it for one left
   * by a dead process and remove it. */
  char tmp[40];
  snprintf(tmp, sizeof tmp, "%s.new", ctl->name);
  unlinkat(ctl->dirfd, tmp, 0);
  char path[128];
  short_path(path, sizeof path, ctl->dirfd, tmp);
  uv_pipe_init(loop, &ctl->server, 0);
  ctl->server.data = ctl;
  ctl->handles = 1;
  int rc = uv_pipe_bind(&ctl->server, path);
  /* Read and write for the owner only: connecting takes write access. */
  if (rc == 0 && fchmodat(ctl->dirfd, tmp, 0600, 0) != 0) rc = uv_translate_sys_error(errno);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&ctl->server, 16, on_connection);
  if (rc == 0 && renameat(ctl->dirfd, tmp, ctl->dirfd, ctl->name) != 0) rc = uv_translate_sys_error(errno);
  if (rc != 0) {
    snprintf(err, errlen, "cannot listen on '%s/%s': %s", dir, ctl->name, uv_strerror(rc));
    unlinkat(ctl->dirfd, tmp, 0);
    close(ctl->dirfd);
    /* Freed once the loop closed the handle. */
    uv_close((uv_handle_t *)&ctl->server, server_closed);
    return -1;
  }
  eddy_connset_init(&ctl->clients, loop, "control socket", MAX_CLIENTS, on_expire, on_expire,
                    ctl);
  ctl->handles = 2;
  *out = ctl;
  return 0;
}

void eddy_control_stop(eddy_control *ctl) {
  if (!ctl) return;
  unlinkat(ctl->dirfd, ctl->name, 0);
  close(ctl->dirfd);
  while (ctl->clients.oldest) {
    client *c = (client *)ctl->clients.oldest;
    eddy_connset_remove(&ctl->clients, &c->link);
    c->ctl = NULL;
    close_client(c);
  }
  uv_close((uv_handle_t *)&ctl->server, server_closed);
  eddy_connset_close(&ctl->clients, timer_closed);
}

/* ---- the client -------------------------------------------------------------- */

static int64_t mono_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Sends request to socket name in dirfd; the answer in *answer (malloc'd).
 * Returns 0, 1 when nobody listens there (a stale socket), -1 on error. */
static int ask(int dirfd, const char *name, const char *request, int timeout_ms,
               char **answer, char *err, size_t errlen) {
  struct sockaddr_un a;
  memset(&a, 0, sizeof a);
  a.sun_family = AF_UNIX;
  short_path(a.sun_path, sizeof a.sun_path, dirfd, name);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) { snprintf(err, errlen, "socket: %s", strerror(errno)); return -1; }
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    close(fd);
    if (e == ECONNREFUSED || e == ENOENT) return 1;
    snprintf(err, errlen, "cannot connect to '%s': %s", name, strerror(e));
    return -1;
  }
  size_t rl = strlen(request);
  if (write(fd, request, rl) != (ssize_t)rl || write(fd, "\n", 1) != 1) {
    snprintf(err, errlen, "cannot send to '%s': %s", name, strerror(errno));
    close(fd);
    return -1;
  }
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  int64_t deadline = mono_ms() + timeout_ms;
  for (;;) {
    int left = (int)(deadline - mono_ms());
    struct pollfd p = { fd, POLLIN, 0 };
    if (!buf || left <= 0 || poll(&p, 1, left) <= 0) {
      snprintf(err, errlen, buf ? "no answer from '%s' within %d ms" : "out of memory", name,
               timeout_ms);
      free(buf);
      close(fd);
      return -1;
    }
    if (len + 1024 > cap) {
      char *n = realloc(buf, cap *= 2);
      if (!n) { free(buf); buf = NULL; continue; }
      buf = n;
    }
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = 0;
  *answer = buf;
  return 0;
}

static int by_pid(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

int eddy_control_call(const char *data_dir, const char *request, int timeout_ms,
                      void (*fn)(void *ud, long pid, const char *answer), void *ud,
                      char *err, size_t errlen) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/control", data_dir);
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return errno == ENOENT ? 0 : (snprintf(err, errlen, "cannot open '%s': %s",
                                                       dir, strerror(errno)), -1);
  DIR *d = fdopendir(dup(dirfd));
  long pids[256];
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) && n < 256) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (pid > 0 && strcmp(end, ".sock") == 0) pids[n++] = pid;
  }
  if (d) closedir(d);
  qsort(pids, (size_t)n, sizeof *pids, by_pid);
  int answered = 0;
  for (int i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "%ld.sock", pids[i]);
    char *answer = NULL;
    int rc = ask(dirfd, name, request, timeout_ms, &answer, err, errlen);
    if (rc == 1) {
      /* Nobody listens: the process is gone (its pid may live on in
       * another process, which then has no socket of this name). */
      if (kill((pid_t)pids[i], 0) != 0 && errno == ESRCH) unlinkat(dirfd, name, 0);
      continue;
    }
    if (rc < 0) { close(dirfd); return -1; }
    fn(ud, pids[i], answer);
    free(answer);
    answered++;
  }
  close(dirfd);
  return answered;
}
