// The workload benchmark's evaluation engine: given the guest's memory and,
// tick by tick (a few ms of guest run time, the guest paused in between),
// the pages written during the tick, it runs every memory-sync
// configuration side by side on the same states, each with its own sender
// state, for several epoch lengths built from the same tick stream.
//
// Epochs. An epoch of E ms ends at the tick nearest to the next multiple of
// E ms of guest time (E / tick_ms ticks when ticks keep their nominal
// length; fewer when the pause/resume round trips make them longer, as on a
// loaded host -- the speculation policies are told the nominal count and
// tolerate shorter epochs). Its dirty set is the union
// of its ticks' write sets; what is sent at its end are those pages'
// contents at the end (read while the guest is paused). Every epoch length
// keeps its own image of what the backup holds (its last boundary), which
// is the base of the stateless coders (XOR+RLE, XBZRLE) and of the check
// below. Those baselines kept a cache of last-sent pages (Remus: 32 MiB,
// LRU); here a page is in their cache exactly when the "runs" lane's shadow
// store (copy mode, same budget) holds it -- the same hits and misses, since
// every non-speculative lane of an epoch length sees the same page sequence.
// A miss sends the page whole, as for ftsync's own shadow stores.
//
// Speculative transfer, simulated exactly from the ticks: at the end of
// tick t (not the epoch's last), a SpecDriver (a speculation policy) names
// pages to send; they are encoded with the lane's coder from their contents
// at t and counted as speculative bytes. A page written in a later tick of
// the epoch is sent again at the epoch's end, as a delta against the
// speculative copy (the lane's shadow store holds it); one not written
// again costs nothing at the end.
//
// Check. For every page whose pfn is a multiple of verify_every, each lane's
// records of the epoch (speculative ones, then the end-of-epoch one) are
// decoded onto the backup's previous copy and must give the page's contents
// at the epoch's end; compressed outputs are decompressed and compared.
// Failures are counted (and reported; the run then fails).
//
// CPU time: thread CPU clock around each lane's encoding of an epoch (end of
// epoch plus its speculative sends), plus the compressor's time for
// compressed outputs. Lanes run in a rotating order so none always pays the
// cold caches.
#ifndef FTSYNC_BENCH_WORKLOADS_EVALUATOR_ENGINE_H_
#define FTSYNC_BENCH_WORKLOADS_EVALUATOR_ENGINE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coders.h"
#include "ftsync/dirty_bitmap.h"
#include "ftsync/status.h"

namespace ftsync::wl {

// A speculation policy as the engine drives it (an adapter over one of
// libftsync's policies).
class SpecDriver {
 public:
  virtual ~SpecDriver() = default;
  // The end of tick `tick` (0-based, counted in nominal ticks of guest time
  // since the epoch began, strictly increasing; may reach ticks - 1 or more
  // when ticks run long) of an epoch of nominally `ticks` ticks. `written`: the pages written during this tick (ascending).
  // Appends to *send the pages to send speculatively now.
  virtual void OnTick(int tick, int ticks, std::span<const uint64_t> written,
                      std::vector<uint64_t>* send) = 0;
  // The epoch's end. `final_pages`: what is left to send at the end
  // (ascending): the dirty set less the pages whose speculative copy is
  // current (as a re-arming dirty log's final fetch reports it).
  // `baseline_bytes`: what the same lane's encoding would send without
  // speculation (the non-speculative lane of the same coder), `spec_bytes`
  // and `final_bytes`: what this lane sent at ticks and at the end.
  virtual void OnEpochEnd(std::span<const uint64_t> final_pages, uint64_t baseline_bytes,
                          uint64_t spec_bytes, uint64_t final_bytes) = 0;
};

// Makes the drivers of one epoch length: name -> driver. Called once per
// epoch length (each gets its own policy state).
struct SpecPolicyFactory {
  std::string name;
  std::function<std::unique_ptr<SpecDriver>(uint64_t frames, int ticks_per_epoch)> make;
};

struct EngineOptions {
  double tick_ms = 5;
  std::vector<int> epoch_ms = {25, 100, 200};
  size_t shadow_budget = size_t{64} << 20;  // per shadow store
  uint64_t verify_every = 16;               // 0: no check
  std::vector<SpecPolicyFactory> spec_policies;
  // The policy used in the combined configurations; "" = the first one.
  std::string combined_policy;
  // Threads evaluating the epoch lengths in parallel (1: all on the caller's).
  int threads = 2;
};

// Per epoch: what one epoch length's end cost in the real pipeline's terms.
struct EpochEnd {
  int epoch_ms;
  uint64_t pages;   // dirty pages staged
  double copy_ms;   // copying them out of guest RAM (the staging copy)
};

class Engine {
 public:
  // `ram`: the guest's memory (frames * 4096 bytes), readable while the
  // guest is paused.
  static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options, uint64_t frames,
                                                const uint8_t* ram);
  ~Engine();

  // Epoch 0: every page is sent once (fills the shadow stores and the
  // backup images); not counted.
  void Start();
  // One tick ended (guest paused): `written` are the pages written during
  // it, ascending; `run_ms` the guest's run time in it. Returns the epoch
  // ends that fell on this tick.
  std::vector<EpochEnd> OnTick(std::span<const uint64_t> written, double run_ms);
  // The real pipeline's pause of an epoch end (recorded per epoch length).
  void RecordPause(int epoch_ms, double pause_ms, double copy_ms, uint64_t pages);

  uint64_t verify_failures() const { return verify_failures_; }
  uint64_t verify_checked() const { return verify_checked_; }
  uint64_t ticks() const { return ticks_; }
  double guest_ms() const { return guest_ms_; }
  double eval_cpu_s() const;

  // Summary (per epoch length and configuration) and per-epoch series.
  nlohmann::json Summary() const;
  nlohmann::json Series() const;

 private:
  struct Horizon;
  struct Lane;
  Engine() = default;
  void SpecTick(Horizon& h, Lane& lane, std::span<const uint64_t> written);
  EpochEnd EndEpoch(Horizon& h);
  void Verify(Horizon& h, const std::vector<uint64_t>& pages);

  EngineOptions opts_;
  uint64_t frames_ = 0;
  const uint8_t* ram_ = nullptr;
  std::vector<std::unique_ptr<Horizon>> horizons_;
  uint64_t ticks_ = 0;
  double guest_ms_ = 0;
  uint64_t verify_failures_ = 0;
  uint64_t verify_checked_ = 0;
};

}  // namespace ftsync::wl

#endif  // FTSYNC_BENCH_WORKLOADS_EVALUATOR_ENGINE_H_
