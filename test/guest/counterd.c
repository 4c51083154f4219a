/*
 * counterd: the TCP service inside ftsync's test guest.
 *
 * Its whole state (named counters and a request count) lives in guest
 * memory, so a client can tell after a failover whether the replica lost or
 * repeated a state change: every request changes state and the reply shows
 * the new state.  One process, one poll() loop, no fork or thread per client.
 *
 * Line protocol (one request per line, "\n" or "\r\n"; command words are
 * case-insensitive; every reply is one line ending in "\n"):
 *   PING            -> PONG
 *   INCR key        -> key N      N is the counter after adding 1
 *   GET key         -> key N      0 for a key never incremented
 *   STATS           -> requests=R keys=K clients=C accepted=A
 *   ECHO text       -> OK         and "text" is written to stdout (the console)
 *   QUIT            -> BYE        then the server closes the connection
 *   anything else   -> ERR message
 * Every request (even a bad one) counts towards R, STATS included.  Keys are
 * 1..64 bytes of printable ASCII without spaces.
 *
 * Options:
 *   -p PORT    TCP port (default 7000)
 *   -n N       write "counterd: requests=R" to stdout every N requests
 *              (default 1000, 0 = never)
 *   -r TEXT    once listening, write "ftsync-guest: ready TEXT port=PORT"
 *              to stdout (the line test harnesses wait for)
 *
 * stdout is the guest's serial console.  Writes to it are blocking and whole
 * lines, so under output commit each line is either held or released as one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_LINE 512        /* longest request line accepted */
#define OUT_LIMIT 65536     /* stop reading a client whose replies pile up */
#define MAX_KEY 64
#define MAX_KEYS 65536
#define MAX_CLIENTS 4096

struct client {
  int fd;
  size_t in_len;
  char in[MAX_LINE];
  int discarding;           /* inside an over-long line: drop until '\n' */
  int closing;              /* close once the output is flushed */
  char *out;
  size_t out_len, out_cap, out_off;
};

struct entry {
  char *key;                /* NULL: empty slot */
  uint64_t value;
};

static struct entry *table;
static size_t table_cap, table_used;

static uint64_t requests, accepted;
static unsigned long log_every = 1000;

static struct client **clients;
static struct pollfd *pfds;
static size_t nclients, max_clients = MAX_CLIENTS;
static int accept_paused;   /* out of descriptors or memory: retry after a
                               client leaves or after a second */

/* ---- console output ---- */

/* Writes all of buf to stdout, retrying on EINTR/short writes. */
static void console_write(const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(1, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  /* console gone: nothing useful to do */
    }
    buf += n;
    len -= (size_t)n;
  }
}

static void console_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void console_line(const char *fmt, ...) {
  char buf[MAX_LINE + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)(sizeof buf - 2);
  buf[n++] = '\n';
  console_write(buf, (size_t)n);
}

/* ---- counters: open addressing, FNV-1a ---- */

static uint64_t hash_key(const char *k, size_t len) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)k[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static struct entry *lookup(const char *k, size_t len, int create) {
  if (create && (table_used + 1) * 4 > table_cap * 3) {
    size_t ncap = table_cap ? table_cap * 2 : 256;
    struct entry *nt = calloc(ncap, sizeof *nt);
    if (!nt) return NULL;
    for (size_t i = 0; i < table_cap; i++) {
      if (!table[i].key) continue;
      size_t j = hash_key(table[i].key, strlen(table[i].key)) & (ncap - 1);
      while (nt[j].key) j = (j + 1) & (ncap - 1);
      nt[j] = table[i];
    }
    free(table);
    table = nt;
    table_cap = ncap;
  }
  if (table_cap == 0) return NULL;
  size_t i = hash_key(k, len) & (table_cap - 1);
  while (table[i].key) {
    if (strlen(table[i].key) == len && memcmp(table[i].key, k, len) == 0) return &table[i];
    i = (i + 1) & (table_cap - 1);
  }
  if (!create || table_used >= MAX_KEYS) return NULL;
  char *copy = malloc(len + 1);
  if (!copy) return NULL;
  memcpy(copy, k, len);
  copy[len] = '\0';
  table[i].key = copy;
  table[i].value = 0;
  table_used++;
  return &table[i];
}

/* ---- replies ---- */

static int out_append(struct client *c, const char *s, size_t len) {
  if (c->out_len + len > c->out_cap) {
    size_t ncap = c->out_cap ? c->out_cap : 256;
    while (ncap < c->out_len + len) ncap *= 2;
    char *n = realloc(c->out, ncap);
    if (!n) return -1;
    c->out = n;
    c->out_cap = ncap;
  }
  memcpy(c->out + c->out_len, s, len);
  c->out_len += len;
  return 0;
}

static void reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct client *c, const char *fmt, ...) {
  char buf[MAX_LINE + 64];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)(sizeof buf - 2);
  buf[n++] = '\n';
  if (out_append(c, buf, (size_t)n) < 0) c->closing = 1;
}

static int valid_key(const char *k, size_t len) {
  if (len == 0 || len > MAX_KEY) return 0;
  for (size_t i = 0; i < len; i++)
    if (k[i] <= ' ' || k[i] > '~') return 0;
  return 1;
}

/* Handles one request line (without its terminator, NUL-terminated). */
static void count_request(void) {
  requests++;
  if (log_every && requests % log_every == 0)
    console_line("counterd: requests=%llu", (unsigned long long)requests);
}

static void handle_line(struct client *c, char *line, size_t len) {
  count_request();

  char *cmd = line;
  while (*cmd == ' ' || *cmd == '\t') cmd++;
  char *arg = cmd;
  while (*arg && *arg != ' ' && *arg != '\t') arg++;
  size_t cmd_len = (size_t)(arg - cmd);
  while (*arg == ' ' || *arg == '\t') arg++;
  size_t arg_len = len - (size_t)(arg - line);
  /* trailing blanks never belong to a key */
  while (arg_len > 0 && (arg[arg_len - 1] == ' ' || arg[arg_len - 1] == '\t')) arg_len--;
  arg[arg_len] = '\0';

#define IS(word) (cmd_len == sizeof(word) - 1 && strncasecmp(cmd, word, cmd_len) == 0)
  if (IS("PING")) {
    reply(c, "PONG");
  } else if (IS("INCR") || IS("GET")) {
    int incr = IS("INCR");
    if (!valid_key(arg, arg_len)) {
      reply(c, "ERR bad key");
      return;
    }
    struct entry *e = lookup(arg, arg_len, incr);
    if (incr && !e) {
      reply(c, "ERR too many keys");
      return;
    }
    if (incr) e->value++;
    reply(c, "%s %llu", arg, (unsigned long long)(e ? e->value : 0));
  } else if (IS("STATS")) {
    reply(c, "requests=%llu keys=%zu clients=%zu accepted=%llu",
          (unsigned long long)requests, table_used, nclients, (unsigned long long)accepted);
  } else if (IS("ECHO")) {
    console_line("%s", arg);
    reply(c, "OK");
  } else if (IS("QUIT")) {
    reply(c, "BYE");
    c->closing = 1;
  } else if (cmd_len == 0) {
    reply(c, "ERR empty request");
  } else {
    reply(c, "ERR unknown command");
  }
#undef IS
}

/* ---- connections ---- */

static void set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void add_client(int fd) {
  if (nclients >= max_clients) {
    close(fd);
    return;
  }
  struct client *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return;
  }
  int off = 0, on = 1;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof off);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  set_nonblock(fd);
  c->fd = fd;
  clients[nclients] = c;
  pfds[nclients + 1].fd = fd;
  nclients++;
  accepted++;
}

static void drop_client(size_t i) {
  struct client *c = clients[i];
  close(c->fd);
  free(c->out);
  free(c);
  nclients--;
  clients[i] = clients[nclients];
  pfds[i + 1] = pfds[nclients + 1];
  accept_paused = 0;
}

/* Reads what is available and handles every complete line.  Returns -1 when
 * the connection should be dropped now. */
static int client_read(struct client *c) {
  char buf[4096];
  ssize_t n = read(c->fd, buf, sizeof buf);
  if (n == 0) {
    /* peer finished sending: answer what it sent, then close */
    c->closing = 1;
    return 0;
  }
  if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
  for (ssize_t i = 0; i < n && !c->closing; i++) {
    char ch = buf[i];
    if (ch == '\n') {
      if (c->discarding) {
        c->discarding = 0;
        count_request();
        reply(c, "ERR line too long");
      } else {
        size_t len = c->in_len;
        if (len > 0 && c->in[len - 1] == '\r') len--;
        c->in[len] = '\0';
        handle_line(c, c->in, len);
      }
      c->in_len = 0;
    } else if (c->discarding) {
      /* skip */
    } else if (c->in_len + 1 >= sizeof c->in) {
      c->discarding = 1;
      c->in_len = 0;
    } else {
      c->in[c->in_len++] = ch;
    }
  }
  return 0;
}

/* Sends pending replies.  Returns -1 when the connection should be dropped. */
static int client_write(struct client *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      return -1;
    }
    c->out_off += (size_t)n;
  }
  c->out_off = c->out_len = 0;
  return c->closing ? -1 : 0;
}

int main(int argc, char **argv) {
  int port = 7000;
  const char *ready = NULL;
  int opt;
  while ((opt = getopt(argc, argv, "p:n:r:h")) != -1) {
    switch (opt) {
      case 'p': port = atoi(optarg); break;
      case 'n': log_every = strtoul(optarg, NULL, 10); break;
      case 'r': ready = optarg; break;
      default:
        fprintf(stderr, "usage: counterd [-p PORT] [-n LOG_EVERY] [-r READY_TEXT]\n");
        return 2;
    }
  }
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "counterd: bad port %d\n", port);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  /* One descriptor per client: raise the soft limit as far as allowed. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t want = MAX_CLIENTS + 16;
    if (rl.rlim_cur < want) {
      rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want) max_clients = rl.rlim_cur > 32 ? (size_t)rl.rlim_cur - 16 : 16;
  }

  clients = calloc(MAX_CLIENTS, sizeof *clients);
  pfds = calloc(MAX_CLIENTS + 1, sizeof *pfds);
  if (!clients || !pfds) {
    fprintf(stderr, "counterd: out of memory\n");
    return 1;
  }

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) {
    perror("counterd: socket");
    return 1;
  }
  int on = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)port);
  sa.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 128) < 0) {
    fprintf(stderr, "counterd: cannot listen on port %d: %s\n", port, strerror(errno));
    return 1;
  }
  set_nonblock(ls);
  pfds[0].fd = ls;
  pfds[0].events = POLLIN;

  if (ready) console_line("ftsync-guest: ready %s port=%d", ready, port);

  for (;;) {
    for (size_t i = 0; i < nclients; i++) {
      struct client *c = clients[i];
      short ev = 0;
      if (!c->closing && c->out_len - c->out_off < OUT_LIMIT) ev |= POLLIN;
      if (c->out_off < c->out_len) ev |= POLLOUT;
      pfds[i + 1].events = ev;
      pfds[i + 1].revents = 0;
    }
    pfds[0].events = (nclients < max_clients && !accept_paused) ? POLLIN : 0;
    pfds[0].revents = 0;
    int ready_fds = poll(pfds, nclients + 1, accept_paused ? 1000 : -1);
    if (ready_fds < 0) {
      if (errno == EINTR) continue;
      perror("counterd: poll");
      return 1;
    }
    if (ready_fds == 0) accept_paused = 0;  /* try accepting again */
    /* Walk backwards: drop_client moves the last client into slot i. */
    for (size_t i = nclients; i-- > 0;) {
      struct client *c = clients[i];
      short re = pfds[i + 1].revents;
      int bad = 0;
      if (re & (POLLIN | POLLHUP | POLLERR)) bad = client_read(c) < 0;
      if (!bad && (c->out_off < c->out_len || c->closing)) bad = client_write(c) < 0;
      if (bad) drop_client(i);
    }
    if (pfds[0].revents & POLLIN) {
      for (;;) {
        int fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            accept_paused = 1;  /* retried once a client disconnects */
          break;
        }
        add_client(fd);
        if (nclients >= max_clients) break;
      }
    }
  }
}
