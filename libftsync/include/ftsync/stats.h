// ftsync: per-epoch and per-session counters of the engines.
#ifndef FTSYNC_STATS_H_
#define FTSYNC_STATS_H_

#include <cstdint>

namespace ftsync {

// One epoch on the primary. Times are microseconds of the monotonic clock.
struct EpochStats {
  uint64_t epoch = 0;
  uint64_t dirty_pages = 0;     // frames harvested at the epoch's end
  uint64_t unreadable_pages = 0;  // frames the domain could not read (sent as zeros)
  uint64_t bytes_staged = 0;    // page bytes copied while paused
  uint64_t state_bytes = 0;     // CPU/device state blob size
  uint64_t bytes_wire = 0;      // bytes of this epoch's records on the stream
  uint64_t paused_us = 0;       // Suspend() called .. Resume() returned
  uint64_t suspend_us = 0;      // Suspend() itself (e.g. QMP stop)
  uint64_t harvest_us = 0;      // fetch-and-clear of the dirty log
  uint64_t copy_us = 0;         // copying dirty frames to the staging area
  uint64_t state_save_us = 0;   // SaveState()
  uint64_t resume_us = 0;       // Resume() itself (e.g. QMP cont)
  uint64_t emit_paused_us = 0;  // writing the epoch while paused (emit_while_paused only)
  uint64_t emit_us = 0;         // encoding + writing to the sink
  int64_t ack_latency_us = -1;  // emit finished .. ACK processed; -1 until ACKed
  // Deltas and compression. Before any of them an epoch's page and state
  // bodies are bytes_staged + state_bytes (+ 8 bytes per page of pfn).
  // Epoch 0 counts its paused round only.
  uint64_t delta_pages = 0;       // dirty frames sent as PAGE_DELTA entries
  uint64_t bytes_after_delta = 0;  // PAGE_DATA, PAGE_DELTA and DEVICE_STATE bodies, uncompressed
  uint64_t bytes_after_compression = 0;  // the same bodies as sent (COMPRESSED headers included)
  uint64_t encode_us = 0;         // computing deltas (shadow store compare and update)
  uint64_t compress_us = 0;       // compressing record bodies
  // Speculative transfer: copies sent ahead for this epoch (a page sent
  // twice counts twice), frames named by its SPEC_APPLY, and the bytes of
  // its SPEC_PAGE_DATA records (not in bytes_wire).
  uint64_t speculative_sends = 0;
  uint64_t speculative_pages = 0;
  uint64_t speculative_bytes = 0;
  // Peek-only domains (Xen): frames named by SPEC_APPLY that were dirty at
  // the epoch's end but unchanged since their speculative copy, so not
  // sent again (they are counted in dirty_pages and bytes_staged).
  uint64_t speculative_unchanged = 0;
};

struct CheckpointerStats {
  uint64_t epochs_sent = 0;     // committed on the stream (epoch 0 included)
  uint64_t epochs_acked = 0;
  uint64_t in_flight = 0;       // sent, not yet ACKed
  uint64_t precopy_rounds = 0;  // live rounds of epoch 0
  uint64_t total_dirty_pages = 0;
  uint64_t total_bytes_wire = 0;
  uint64_t redirtied_pages = 0; // put back after failures
  uint64_t heartbeats_received = 0;
  EpochStats last;              // the newest epoch (epoch 0 included)
};

struct ReceiverStats {
  bool has_complete_epoch = false;
  uint64_t last_complete_epoch = 0;
  uint64_t epochs_applied = 0;
  uint64_t pages_applied = 0;
  uint64_t delta_pages_applied = 0;  // of pages_applied: PAGE_DELTA entries (base checked)
  uint64_t speculative_pages_applied = 0;  // of pages_applied: SPEC_APPLY entries
  uint64_t bytes_received = 0;
  uint64_t heartbeats_received = 0;
  uint64_t last_apply_us = 0;   // EPOCH_COMMIT received .. replica updated
  uint64_t discarded_epochs = 0;  // open epochs dropped (stream broke or was rejected)
};

}  // namespace ftsync

#endif  // FTSYNC_STATS_H_
