/* The C API test: a toolstack written in C protects an in-memory domain of
 * its own through libftsync.so, to a receiver in another thread over pipes,
 * and checks the replica byte for byte and the order of device commits. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ftsync/ftsync.h>

#define FRAMES 512
#define PAGE 4096

static int failures;
#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "capi_test:%d: check failed: %s\n", __LINE__, #cond); \
      failures++;                                                            \
    }                                                                        \
  } while (0)

/* ---- the toolstack's own domain ---- */
struct dom {
  uint8_t* mem;
  uint64_t dirty[(FRAMES + 63) / 64];
  int logging, suspended;
  uint64_t state_counter;
};

static int d_enable(void* c) { ((struct dom*)c)->logging = 1; return 0; }
static int d_disable(void* c) { ((struct dom*)c)->logging = 0; return 0; }
static int d_fetch(void* c, uint64_t* w, size_t n) {
  struct dom* d = c;
  for (size_t i = 0; i < n; i++) { w[i] = d->dirty[i]; d->dirty[i] = 0; }
  return 0;
}
static int d_redirty(void* c, const uint64_t* p, size_t n) {
  struct dom* d = c;
  for (size_t i = 0; i < n; i++) d->dirty[p[i] / 64] |= 1ull << (p[i] % 64);
  return 0;
}
static int d_suspend(void* c) { struct dom* d = c; if (d->suspended) return EINVAL; d->suspended = 1; return 0; }
static int d_resume(void* c) { struct dom* d = c; if (!d->suspended) return EINVAL; d->suspended = 0; return 0; }
static int d_read(void* c, const uint64_t* p, size_t n, uint8_t* dst, int* err) {
  struct dom* d = c;
  for (size_t i = 0; i < n; i++) {
    err[i] = p[i] < FRAMES ? 0 : EINVAL;
    if (!err[i]) memcpy(dst + i * PAGE, d->mem + p[i] * PAGE, PAGE);
  }
  return 0;
}
static int d_save(void* c, uint8_t** blob, size_t* len) {
  struct dom* d = c;
  if (!d->suspended) return EINVAL;
  *blob = malloc(8);
  memcpy(*blob, &d->state_counter, 8);
  *len = 8;
  return 0;
}
static int d_restore(void* c, const uint8_t* b, size_t n) {
  if (n != 8) return EINVAL;
  memcpy(&((struct dom*)c)->state_counter, b, 8);
  return 0;
}

static void guest_write(struct dom* d, uint64_t pfn, unsigned seed) {
  for (int i = 0; i < 64; i++) d->mem[pfn * PAGE + (seed * 31 + i * 7) % PAGE] = (uint8_t)(seed + i);
  if (d->logging) d->dirty[pfn / 64] |= 1ull << (pfn % 64);
  d->state_counter++;
}

/* ---- a checkpoint device that records commit order ---- */
struct dev { int setup, teardown; uint64_t commits; int64_t last_commit; int out_of_order; };
static int v_setup(void* c) { ((struct dev*)c)->setup++; return 0; }
static int v_post(void* c, uint64_t e) { (void)c; (void)e; return 0; }
static int v_pre(void* c, uint64_t e) { (void)c; (void)e; return 0; }
static int v_commit(void* c, uint64_t e) {
  struct dev* v = c;
  if ((int64_t)e != v->last_commit + 1) v->out_of_order = 1;
  v->last_commit = (int64_t)e;
  v->commits++;
  return 0;
}
static void v_teardown(void* c) { ((struct dev*)c)->teardown++; }

struct rx { ftsync_receiver* r; int rc; };
static void* run_receiver(void* arg) {
  struct rx* x = arg;
  x->rc = ftsync_receiver_run(x->r);
  return NULL;
}

int main(void) {
  char dir[] = "/tmp/ftsync-capi-XXXXXX";
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  int fwd[2], back[2];
  if (pipe(fwd) || pipe(back)) { perror("pipe"); return 1; }

  struct dom d;
  memset(&d, 0, sizeof d);
  d.mem = malloc((size_t)FRAMES * PAGE);
  for (size_t i = 0; i < (size_t)FRAMES * PAGE; i++) d.mem[i] = (uint8_t)(i * 2654435761u >> 13);

  ftsync_domain_ops ops = {PAGE, FRAMES, d_enable, d_disable, d_fetch, d_redirty, d_suspend,
                           d_resume, d_read, d_save, d_restore};
  struct dev v = {0, 0, 0, -1, 0};
  ftsync_device_ops dops = {"recorder", v_setup, v_post, v_pre, v_commit, v_teardown};

  CHECK(strcmp(ftsync_strerror(FTSYNC_ECORRUPT), "corruption") == 0);
  ftsync_checkpointer* bad = NULL;
  CHECK(ftsync_checkpointer_create(NULL, NULL, fwd[1], back[0], NULL, &bad) == FTSYNC_EINVAL);

  struct rx x = {NULL, 0};
  CHECK(ftsync_receiver_create(dir, fwd[0], back[1], &x.r) == FTSYNC_OK);
  uint64_t e = 0;
  CHECK(ftsync_receiver_last_complete_epoch(x.r, &e) == FTSYNC_ENOTFOUND);
  pthread_t th;
  pthread_create(&th, NULL, run_receiver, &x);

  ftsync_checkpointer_options o;
  ftsync_checkpointer_options_init(&o);
  CHECK(o.max_in_flight == 2);
  CHECK(o.delta == NULL && o.compression == NULL && o.delta_block_size == 64);
  {
    ftsync_checkpointer_options bad_o = o;
    bad_o.delta = "sometimes";
    CHECK(ftsync_checkpointer_create(&ops, &d, fwd[1], back[0], &bad_o, &bad) == FTSYNC_EINVAL);
    bad_o.delta = "hash";
    bad_o.compression = "rar";
    CHECK(ftsync_checkpointer_create(&ops, &d, fwd[1], back[0], &bad_o, &bad) == FTSYNC_EINVAL);
    bad_o.compression = "zlib";
    bad_o.speculation = "psychic";
    CHECK(ftsync_checkpointer_create(&ops, &d, fwd[1], back[0], &bad_o, &bad) == FTSYNC_EINVAL);
  }
  o.max_in_flight = 1;
  o.speculation = "history";  /* this domain cannot peek: Speculate is a no-op */
  ftsync_checkpointer* cp = NULL;
  CHECK(ftsync_checkpointer_create(&ops, &d, fwd[1], back[0], &o, &cp) == FTSYNC_OK);
  CHECK(ftsync_checkpointer_add_device(cp, &dops, &v) == FTSYNC_OK);
  int rc = ftsync_checkpointer_start(cp);
  if (rc != FTSYNC_OK) fprintf(stderr, "start: %s\n", ftsync_checkpointer_error(cp));
  CHECK(rc == FTSYNC_OK);
  CHECK(v.setup == 1);

  unsigned seed = 7;
  for (int epoch = 1; epoch <= 20; epoch++) {
    for (int k = 0; k < 30; k++) { seed = seed * 1103515245u + 12345u; guest_write(&d, (seed >> 8) % FRAMES, seed); }
    CHECK(ftsync_checkpointer_speculate(cp) == FTSYNC_OK);
    rc = ftsync_checkpointer_checkpoint(cp);
    if (rc != FTSYNC_OK) fprintf(stderr, "checkpoint: %s\n", ftsync_checkpointer_error(cp));
    CHECK(rc == FTSYNC_OK);
  }
  ftsync_checkpointer_stats st;
  CHECK(ftsync_checkpointer_get_stats(cp, &st) == FTSYNC_OK);
  CHECK(st.epochs_sent == 21);
  CHECK(st.last.epoch == 20);
  CHECK(st.last.dirty_pages > 0 && st.last.dirty_pages <= 30);
  /* Defaults: deltas (runs) against the pages sent before, zstd. Pages
   * this test writes twice or more travel as deltas. */
  CHECK(st.last.bytes_after_compression <= st.last.bytes_after_delta);
  CHECK(st.last.bytes_wire > st.last.bytes_after_compression);
  CHECK(st.last.bytes_wire < st.last.bytes_after_compression + 16 * 64);
  /* With one epoch in flight, commits trail sends by at most one. */
  CHECK(v.commits >= 20);
  CHECK(ftsync_checkpointer_finish(cp) == FTSYNC_OK);
  CHECK(v.commits == 21 && !v.out_of_order && v.teardown == 1);
  pthread_join(th, NULL);
  CHECK(x.rc == FTSYNC_OK);
  CHECK(ftsync_receiver_last_complete_epoch(x.r, &e) == FTSYNC_OK && e == 20);
  ftsync_receiver_stats rs;
  CHECK(ftsync_receiver_get_stats(x.r, &rs) == FTSYNC_OK && rs.epochs_applied == 21);
  CHECK(rs.delta_pages_applied > 0 && rs.delta_pages_applied < rs.pages_applied);

  /* The replica equals the domain's memory, byte for byte. */
  int fd = open(ftsync_receiver_memory_path(x.r), O_RDONLY);
  CHECK(fd >= 0);
  uint8_t* rep = malloc((size_t)FRAMES * PAGE);
  CHECK(pread(fd, rep, (size_t)FRAMES * PAGE, 0) == (ssize_t)FRAMES * PAGE);
  CHECK(memcmp(rep, d.mem, (size_t)FRAMES * PAGE) == 0);
  close(fd);

  ftsync_checkpointer_destroy(cp);
  ftsync_receiver_destroy(x.r);
  free(rep);
  free(d.mem);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "capi_test: could not remove %s\n", dir);
  if (failures) { fprintf(stderr, "capi_test: %d checks failed\n", failures); return 1; }
  printf("capi_test: all checks passed\n");
  return 0;
}
