/* ftsync: the plain C API, for toolstacks that are not written in C++.
 *
 * Conventions:
 *  - Every function that can fail returns int: FTSYNC_OK (0) or a negative
 *    FTSYNC_E* code. ftsync_strerror() names a code; the *_error() function
 *    of an object returns the full message of its last failure.
 *  - Callbacks a caller provides return 0 on success or a positive errno.
 *  - Objects are opaque and created/destroyed in pairs; destroy accepts NULL.
 *  - The library does no socket I/O of its own beyond reading and writing the
 *    file descriptors it is given (pipes, sockets, files).
 */
#ifndef FTSYNC_FTSYNC_H_
#define FTSYNC_FTSYNC_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes (negated ftsync::Errc). */
#define FTSYNC_OK 0
#define FTSYNC_EINVAL (-1)      /* invalid argument */
#define FTSYNC_EIO (-2)         /* a system call failed */
#define FTSYNC_ECORRUPT (-3)    /* malformed or corrupted stream */
#define FTSYNC_EPROTO (-4)      /* records in a forbidden order */
#define FTSYNC_EVERSION (-5)    /* peer speaks another stream version */
#define FTSYNC_ENOTSUP (-6)     /* feature missing on this host */
#define FTSYNC_ENOTFOUND (-7)   /* no such object / no complete epoch */
#define FTSYNC_EPEERGONE (-8)   /* peer closed or connection broke */
#define FTSYNC_EREJECTED (-9)   /* backup sent NACK */
#define FTSYNC_ENOSPACE (-10)   /* disk or memory full */
#define FTSYNC_EBUSY (-11)      /* try again */
#define FTSYNC_ESTATE (-12)     /* call made in the wrong state */
#define FTSYNC_EINTERNAL (-13)  /* a bug in ftsync */

/* "0.1.0" */
const char* ftsync_version(void);
/* Short name of an error code ("corruption"). */
const char* ftsync_strerror(int code);

/* ---- The domain, as callbacks (the Domain seam of hypervisor.h) --------- */
typedef struct ftsync_domain_ops {
  size_t page_size;      /* bytes per frame */
  uint64_t frame_count;  /* frames 0 .. frame_count-1 */
  int (*enable_dirty_log)(void* ctx);
  int (*disable_dirty_log)(void* ctx);
  /* Set bit (pfn & 63) of words[pfn >> 6] for every frame written since the
   * last call, then clear the log. nwords = (frame_count + 63) / 64; the
   * words arrive zeroed. */
  int (*fetch_and_clear_dirty)(void* ctx, uint64_t* words, size_t nwords);
  int (*redirty)(void* ctx, const uint64_t* pfns, size_t count);
  int (*suspend)(void* ctx);
  int (*resume)(void* ctx);
  /* Copy frame pfns[i] to dst + i * page_size; errors[i] = 0 or an errno
   * for a frame that cannot be read. */
  int (*read_frames)(void* ctx, const uint64_t* pfns, size_t count, uint8_t* dst, int* errors);
  /* Return a malloc()ed blob in *blob (ftsync free()s it). */
  int (*save_state)(void* ctx, uint8_t** blob, size_t* length);
  int (*restore_state)(void* ctx, const uint8_t* blob, size_t length);
} ftsync_domain_ops;

/* ---- Checkpoint devices (libxl's phases) --------------------------------- */
typedef struct ftsync_device_ops {
  const char* name;
  int (*setup)(void* ctx);
  int (*postsuspend)(void* ctx, uint64_t epoch);
  int (*preresume)(void* ctx, uint64_t epoch);
  int (*commit)(void* ctx, uint64_t epoch); /* only after the backup ACKed */
  void (*teardown)(void* ctx);
} ftsync_device_ops;

/* ---- Statistics ----------------------------------------------------------- */
typedef struct ftsync_epoch_stats {
  uint64_t epoch, dirty_pages, unreadable_pages, bytes_staged, state_bytes, bytes_wire;
  uint64_t paused_us, harvest_us, copy_us, state_save_us, emit_us;
  int64_t ack_latency_us; /* -1 until ACKed */
  /* Deltas and compression (see EpochStats in stats.h). */
  uint64_t delta_pages, bytes_after_delta, bytes_after_compression, encode_us, compress_us;
  uint64_t speculative_sends, speculative_pages, speculative_bytes;
  uint64_t speculative_unchanged; /* peek-only domains: sent ahead, not resent */
} ftsync_epoch_stats;

typedef struct ftsync_checkpointer_stats {
  uint64_t epochs_sent, epochs_acked, in_flight, precopy_rounds;
  uint64_t total_dirty_pages, total_bytes_wire, redirtied_pages, heartbeats_received;
  ftsync_epoch_stats last;
} ftsync_checkpointer_stats;

typedef struct ftsync_receiver_stats {
  int has_complete_epoch;
  uint64_t last_complete_epoch, epochs_applied, pages_applied, bytes_received;
  uint64_t heartbeats_received, last_apply_us, discarded_epochs;
  uint64_t delta_pages_applied; /* of pages_applied: PAGE_DELTA entries */
  uint64_t speculative_pages_applied; /* of pages_applied: SPEC_APPLY entries */
} ftsync_receiver_stats;

/* ---- Primary -------------------------------------------------------------- */
typedef struct ftsync_checkpointer_options {
  uint32_t max_in_flight;      /* default 2 */
  uint32_t precopy_rounds;     /* default 3 */
  uint64_t precopy_min_pages;  /* default 64 */
  uint32_t batch_pages;        /* default 1024 */
  uint64_t session;            /* 0: random */
  /* Deltas and compression (CheckpointerOptions in checkpointer.h). The
   * strings are read by create() only; NULL keeps the default. */
  const char* delta;            /* "off", "blocks", "runs", "auto", "hash"; default "runs" */
  uint32_t delta_block_size;    /* 64, 128 or 256; default 64 */
  uint64_t shadow_budget_bytes; /* default 32 MiB */
  const char* compression;      /* "none", "zlib", "zstd"; default "zstd" */
  int compression_level;        /* 0: the codec's default */
  const char* speculation;      /* "off", "eager", "history", "fill"; default "off" */
  uint32_t speculation_ticks;   /* ftsync_checkpointer_speculate calls per epoch + 1; default 10 */
} ftsync_checkpointer_options;

typedef struct ftsync_checkpointer ftsync_checkpointer;

void ftsync_checkpointer_options_init(ftsync_checkpointer_options* options);
/* `ops`, `ctx` and the fds must stay valid until destroy; the fds are not
 * closed. `options` may be NULL for the defaults. FTSYNC_EINVAL for an
 * unknown delta or compression name (other bad values fail start). */
int ftsync_checkpointer_create(const ftsync_domain_ops* ops, void* ctx, int stream_fd,
                               int back_channel_fd, const ftsync_checkpointer_options* options,
                               ftsync_checkpointer** out);
/* Before start. `ops` and `ctx` must outlive the checkpointer. */
int ftsync_checkpointer_add_device(ftsync_checkpointer* cp, const ftsync_device_ops* ops, void* ctx);
int ftsync_checkpointer_start(ftsync_checkpointer* cp);       /* handshake + epoch 0 */
int ftsync_checkpointer_checkpoint(ftsync_checkpointer* cp);  /* one epoch */
int ftsync_checkpointer_poll(ftsync_checkpointer* cp, int timeout_ms); /* process ACKs */
/* One speculation tick between epochs (Checkpointer::Speculate). The
 * callback domain has no dirty-log peek or re-arm yet, so through this API
 * it is accepted and does nothing. */
int ftsync_checkpointer_speculate(ftsync_checkpointer* cp);
int ftsync_checkpointer_wait_ack(ftsync_checkpointer* cp, uint64_t epoch);
int ftsync_checkpointer_heartbeat(ftsync_checkpointer* cp);
int ftsync_checkpointer_finish(ftsync_checkpointer* cp);      /* drain, END */
int ftsync_checkpointer_get_stats(const ftsync_checkpointer* cp, ftsync_checkpointer_stats* out);
const char* ftsync_checkpointer_error(const ftsync_checkpointer* cp);
void ftsync_checkpointer_destroy(ftsync_checkpointer* cp);

/* ---- Backup --------------------------------------------------------------- */
typedef struct ftsync_receiver ftsync_receiver;

/* Opens (creating if needed) the replica directory. */
int ftsync_receiver_create(const char* replica_dir, int stream_fd, int back_channel_fd,
                           ftsync_receiver** out);
int ftsync_receiver_handshake(ftsync_receiver* r);
/* One record: 1 = go on, 0 = END received, <0 = error (replica unchanged). */
int ftsync_receiver_step(ftsync_receiver* r);
/* Handshake (if not done) and steps until END (FTSYNC_OK) or an error. */
int ftsync_receiver_run(ftsync_receiver* r);
/* FTSYNC_ENOTFOUND when the replica holds no complete epoch. */
int ftsync_receiver_last_complete_epoch(const ftsync_receiver* r, uint64_t* epoch);
int ftsync_receiver_get_stats(const ftsync_receiver* r, ftsync_receiver_stats* out);
/* Path of the replica's memory image ("DIR/current/memory.img"). */
const char* ftsync_receiver_memory_path(const ftsync_receiver* r);
const char* ftsync_receiver_error(const ftsync_receiver* r);
void ftsync_receiver_destroy(ftsync_receiver* r);

#ifdef __cplusplus
}
#endif

#endif /* FTSYNC_FTSYNC_H_ */
