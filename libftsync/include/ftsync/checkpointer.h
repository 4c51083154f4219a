// ftsync: the primary's engine. Turns a running Domain into a stream of
// epochs (checkpoints) and releases each epoch's output when the backup
// acknowledges it.
//
// Per epoch (Checkpoint()):
//   wait while max_in_flight epochs are unacknowledged (never drop one)
//   Suspend -> devices Postsuspend -> FetchAndClearDirty -> copy dirty frames
//   into the staging area -> SaveState -> devices Preresume -> Resume
//   -> emit EPOCH_BEGIN, PAGE_DATA..., DEVICE_STATE, EPOCH_COMMIT
// The guest is paused only for harvest + local copy + state save; the
// stream is written while it runs. When ACK(n) arrives every device gets
// Commit(n): that is where held network packets and console bytes leave.
//
// Failure rules:
//  - a domain call failing before anything of the epoch was written (read,
//    state save) puts the harvested dirty bits back, resumes the guest and
//    returns the error; Checkpoint() may be called again.
//  - a failure once the epoch is on the stream (sink error, NACK, protocol
//    error on the back channel, Resume failing) is sticky: the session is
//    over. Dirty bits of unacknowledged epochs are put back, so a new
//    session (full synchronisation) or a retry loses nothing.
//
// Threading: all calls on one thread, except SendHeartbeat() and stats(),
// which may come from another.
#ifndef FTSYNC_CHECKPOINTER_H_
#define FTSYNC_CHECKPOINTER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "ftsync/checkpoint_device.h"
#include "ftsync/hypervisor.h"
#include "ftsync/io.h"
#include "ftsync/logger.h"
#include "ftsync/stats.h"
#include "ftsync/status.h"

namespace ftsync {

struct CheckpointerOptions {
  // Epochs emitted but not yet ACKed before Checkpoint() waits. 1 gives
  // strict Remus behaviour; more overlaps the backup's apply with the next
  // epoch at the cost of holding more output.
  uint32_t max_in_flight = 2;
  // Live pre-copy rounds of epoch 0 after the first full pass; each resends
  // the frames dirtied meanwhile while the guest runs. 0 = none.
  uint32_t precopy_rounds = 3;
  // Stop pre-copy early once a round finds this few dirty frames.
  uint64_t precopy_min_pages = 64;
  // Frames per PAGE_DATA record (at most 4 MiB / page size).
  uint32_t batch_pages = 1024;
  // Staging area allocated (and touched) at Start(), in frames. It grows
  // after each epoch to twice that epoch's dirty frames, outside the pause;
  // only an epoch larger than everything before pays for growth while the
  // guest is paused. 0: start empty.
  uint64_t staging_reserve_pages = 4096;
  // Baseline for benchmarks: write each epoch to the stream while the guest
  // is still paused (as Xen 4.17's Remus does), instead of after resuming.
  // Never better; exists to measure what the staging area saves.
  bool emit_while_paused = false;
  // Session identifier for the stream header; 0 picks a random one.
  uint64_t session = 0;
  // Keep the stats of the newest N epochs (stats_history()).
  size_t stats_history = 1024;
  Logger* logger = nullptr;  // nullptr: NullLogger()
};

class Checkpointer {
 public:
  // `domain`, `out` and `back` must outlive the Checkpointer.
  Checkpointer(Domain* domain, ByteSink* out, ByteSource* back, CheckpointerOptions options = {});
  // Runs Teardown on the devices and disables dirty logging if still on.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Adds a checkpoint device (not owned). Only before Start().
  Status AddDevice(CheckpointDevice* device);

  // Sets up devices, writes the stream header, reads the backup's header,
  // enables dirty logging and sends epoch 0: every frame, with live
  // pre-copy rounds, then a final paused round and the state. Does not wait
  // for ACK(0) (see WaitForAck).
  Status Start();

  // Runs one epoch as described above. Requires Start() to have succeeded.
  Status Checkpoint();

  // Processes back-channel records that arrive within timeout_ms
  // (0: only those already there; <0: wait for at least one).
  Status PollBackChannel(int timeout_ms);
  // Blocks until ACK(epoch) (or a later one) has been processed.
  Status WaitForAck(uint64_t epoch);

  // Sends a HEARTBEAT on the forward stream (thread-safe).
  Status SendHeartbeat();

  // Waits for every emitted epoch's ACK, sends END, disables dirty logging,
  // tears devices down. The backup will not fail over after END.
  Status Finish();

  // Switches the emit-while-paused baseline (see CheckpointerOptions) from
  // the next epoch on, so a benchmark can alternate both modes on one guest.
  void set_emit_while_paused(bool on);

  // The sticky status: OK until the session failed.
  Status status() const;
  // Next epoch number Checkpoint() will use.
  uint64_t next_epoch() const;
  // The newest ACKed epoch, or -1 if none.
  int64_t last_acked_epoch() const;
  uint64_t session() const;
  CheckpointerStats stats() const;
  // Stats of recent epochs, oldest first.
  std::vector<EpochStats> stats_history() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftsync

#endif  // FTSYNC_CHECKPOINTER_H_
