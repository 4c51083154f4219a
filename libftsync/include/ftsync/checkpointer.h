// ftsync: the primary's engine. Turns a running Domain into a stream of
// epochs (checkpoints) and releases each epoch's output when the backup
// acknowledges it.
//
// Per epoch (Checkpoint()):
//   wait while max_in_flight epochs are unacknowledged (never drop one)
//   Suspend -> devices Postsuspend -> FetchAndClearDirty -> copy dirty frames
//   into the staging area -> SaveState -> devices Preresume -> Resume
//   -> encode and emit EPOCH_BEGIN, PAGE_DATA/PAGE_DELTA..., DEVICE_STATE,
//      EPOCH_COMMIT
// The guest is paused only for harvest + local copy + state save; deltas
// and compression are computed, and the stream written, while it runs.
//
// Deltas (CheckpointerOptions::delta): the primary keeps a bounded shadow
// store of the last version of each page it sent and sends a dirty page as
// its changed blocks or byte runs (PAGE_DELTA) when the store holds it,
// whole otherwise. Each delta names its base by content hash and the backup
// checks it, so the store must describe the backup exactly: it is filled
// only from epochs > 0 (a page enters when first sent whole after epoch 0)
// and cleared when the session fails. With max_in_flight > 1 epoch n+1 is
// encoded against what the backup will hold after applying epoch n; that
// is safe because any failure of epoch n (send error, NACK) ends the whole
// session (sticky), and a new session starts with a full synchronisation
// and a new Checkpointer. When ACK(n) arrives every device gets
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
// Threading: all calls on one thread, except SendHeartbeat(), stats(),
// stats_history() and speculating(), which may come from another.
#ifndef FTSYNC_CHECKPOINTER_H_
#define FTSYNC_CHECKPOINTER_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "ftsync/checkpoint_device.h"
#include "ftsync/hypervisor.h"
#include "ftsync/io.h"
#include "ftsync/logger.h"
#include "ftsync/stats.h"
#include "ftsync/status.h"

namespace ftsync {

// How dirty pages of epochs > 0 are sent. See stream-format.md, PAGE_DELTA.
enum class DeltaMode : uint8_t {
  kOff,        // whole pages (PAGE_DATA), as Remus: no shadow store
  kBlocks,     // changed blocks of delta_block_size bytes, against a page copy
  kRuns,       // exact changed byte runs, against a page copy
  kAuto,       // per page the smaller of runs and blocks (runs nearly always)
  kBlockHash,  // changed blocks found by comparing per-block hashes: no page
               // copies (about 8 % of kRuns' memory per page at 64-byte
               // blocks), more CPU, and bytes like kBlocks
};

// Speculative state transfer (stream-format.md, SPEC_PAGE_DATA): which
// policy picks the pages Speculate() sends ahead of the epoch's end.
enum class Speculation : uint8_t {
  kOff,      // Speculate() does nothing
  kEager,    // every page seen dirty, at every tick (the resend storm; a reference)
  kHistory,  // adaptive per-page write history, within speculation_budget
  kFill,     // history, spending what is left of the budget at the last tick
};

// Codec of COMPRESSED records (stream-format.md, COMPRESSED).
enum class Compression : uint8_t { kNone, kZlib, kZstd };

// Names for logs and command lines ("off", "runs", "blocks", "auto",
// "hash"; "none", "zlib", "zstd").
const char* DeltaModeName(DeltaMode m);
const char* CompressionName(Compression c);
// "off", "eager", "history", "fill".
const char* SpeculationName(Speculation s);
// The inverses; kInvalidArgument naming the accepted names otherwise.
Result<Speculation> ParseSpeculation(std::string_view name);
Result<DeltaMode> ParseDeltaMode(std::string_view name);
Result<Compression> ParseCompression(std::string_view name);

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
  // Sub-page deltas for epochs > 0 (see DeltaMode). Needs 4 KiB guest
  // pages; with any other page size the epochs are sent whole (logged).
  // Default kRuns: on every workload of bench/diff and the QEMU guest it
  // sends the fewest bytes, and its encoder costs about one page compare.
  DeltaMode delta = DeltaMode::kRuns;
  // Block size of kBlocks, kAuto's blocks and kBlockHash: 64, 128 or 256.
  uint32_t delta_block_size = 64;
  // Memory of the shadow store, bytes, allocated at Start() and never
  // grown. Copy modes keep 4128 bytes per page (32 MiB: about 8100
  // pages, Remus kept 8192); kBlockHash keeps 8 bytes per block + 32
  // (544 bytes at 64-byte blocks: 32 MiB covers about 61000 pages). A
  // page that does not fit (evicted, least recently sent first within its
  // set) is sent whole and re-enters the store.
  size_t shadow_budget_bytes = size_t{32} << 20;
  // COMPRESSED records around PAGE_DATA, PAGE_DELTA and DEVICE_STATE
  // bodies when that makes them smaller. Epoch 0 is compressed too.
  Compression compression = Compression::kZstd;
  // zlib 1..9, zstd 1..19; 0: the codec's fast default (level 1).
  int compression_level = 0;
  // Speculative transfer, driven by Speculate() calls between epochs.
  // Needs a Domain with PeekDirty (else it stays off, logged). Without
  // RearmDirty (a peek-only domain, such as Xen) it also needs a delta
  // mode with a page copy (blocks, runs or auto): every page sent ahead is
  // dirty again at the epoch's end, and is sent then only if it changed
  // since its speculative copy, as a delta against it. So on a peek-only
  // domain speculation shrinks what is sent at the end, not what is copied
  // while the guest is paused. Default off: it needs a caller that ticks.
  Speculation speculation = Speculation::kOff;
  // Speculate() calls expected per epoch + 1 (the policy's T, >= 2).
  uint32_t speculation_ticks = 10;
  // Bound on (speculative + end-of-epoch pages) / pages written, over 16
  // epochs (history, fill); 0: unbounded.
  double speculation_budget = 1.2;
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

  // One speculation tick, with the guest running, between Checkpoint()
  // calls (call it speculation_ticks - 1 times per epoch, evenly spaced):
  // peeks at the dirty log, and sends the pages the policy picks as
  // SPEC_PAGE_DATA for the next epoch after re-arming their tracking (on a
  // domain that can). The next Checkpoint() names them (SPEC_APPLY) and
  // sends only what changed since, as deltas against the speculative
  // copies. A domain call failing
  // here changes nothing and returns its error (the session goes on); a
  // stream failure is sticky as for Checkpoint(). No-op when off.
  Status Speculate();
  // True when Speculate() does something: speculation was asked for, the
  // domain can peek at its dirty log, and it can re-arm it or the delta
  // mode keeps page copies (see `speculation`). Safe from any thread.
  bool speculating() const;

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
