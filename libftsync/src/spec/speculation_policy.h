// ftsync: which pages to send ahead of the checkpoint (speculative state
// transfer), decided from what the dirty log shows while the epoch runs.
//
// An epoch (from one FetchAndClearDirty to the next) is divided into
// ticks: ticks 1 .. ticks_per_epoch-1 happen while the guest runs, the
// epoch ends at tick ticks_per_epoch. At each tick the caller peeks at the
// dirty log and hands the peeked set to Tick(); the policy answers with the
// pages to send now. At the epoch's end the caller hands the fetched set to
// EndEpoch(), and the policy learns from what happened.
//
// The caller's loop (Domain calls from hypervisor.h):
//
//   policy.BeginEpoch();
//   for t in 1 .. T-1:                       (guest running)
//     wait one tick;  d.PeekDirty(&peek);
//     send = policy.Tick(t, peek);
//     d.RearmDirty(send);  d.ReadFrames(send, ...);  ship as speculative
//     (pages that could not be shipped after all: see Unsent)
//   suspend;  d.FetchAndClearDirty(&final);
//   policy.EndEpoch(final);                  ship `final` as usual
//
// What the policy infers from the peeks (with RearmDirty; see
// SpeculationOptions::can_rearm for peek-only backends): a page that
// appears for the first time this epoch was written during the last tick;
// a page it told the caller to send that appears again was rewritten after
// its speculative copy (a wasted send: the page has to be sent again);
// a sent page absent from the final set was saved from the end of the
// epoch.
//
// Accounting (per epoch, in pages):
//   baseline   distinct pages written in the epoch = what a checkpointer
//              without speculation sends at its end;
//   sends      speculative sends (a page sent twice counts twice);
//   final      pages left for the epoch's end (the fetched set);
//   total      sends + final;  wasted = total - baseline  (each wasted
//              send is one speculative copy made obsolete by a rewrite).
// The figure of merit is final / baseline (lower is better: less to send
// while the guest is paused or its output held back); the cost is
// total / baseline.
//
// Policies:
//   none     never sends.
//   eager    sends every page seen dirty at every tick, again after each
//            rewrite: the naive early sending whose resend storm of hot
//            pages was reported for COLO. Useful as the upper bound of
//            what speculation can save and of what it can waste.
//   history  adaptive, per page:
//            - a page whose speculative copy was rewritten in the same
//              epoch (a wasted send) gets a strike and is suppressed for
//              2^strikes epochs (2, 4, .. 64): pages rewritten after a
//              speculative send in recent epochs are not sent. A send that
//              is not rewritten removes a strike;
//            - the page's "late tick" is the latest tick of an epoch at
//              which a rewrite after its send was seen (the epoch's end,
//              T, when it was rewritten within one tick of the send: a hot
//              page). Once its suppression is over, the page is sent only
//              at ticks after its late tick, i.e. once it has been quiet
//              for as long as its own history says it keeps being
//              written; with a late tick of T, never. The late tick is
//              forgotten after an epoch in which the page is not written
//              at all (its behaviour changed);
//            - a page rewritten after its speculative send is not sent
//              again in that epoch.
//            So a hot page costs one wasted send, then is never sent
//            again while it stays hot; a page written at ticks 2 and 6 of
//            each epoch is, after one wasted send, sent from tick 7 on and
//            saved; a cold page is sent the first tick it is seen.
//   fill     history, plus: at the epoch's last tick, what is left of the
//            budget is spent on the pages history holds back (hot or
//            recently wasted) with the best record of surviving that last
//            tick, estimated per page from its earlier last-tick sends
//            ((saved + 1) / (sends + 2); pages below 0.2 are never
//            tried). Each such send is charged its own risk (1 - odds)
//            against the budget. Without a budget it is history. The
//            budget is meant to be used: fill buys a lower end-of-epoch
//            set with bytes the operator already allowed.
//   Every policy can be held to a byte budget (SpeculationOptions::
//   budget_ratio): total <= budget_ratio * baseline over a sliding
//   window of epochs. At each tick the policy allows only as many new
//   sends as the remaining allowance covers at the recently measured
//   waste rate, lowest-risk pages first (history: fewest strikes, then
//   earliest late tick). The bound is met over the window up to the waste of one
//   epoch's sends in flight.
//
// Not thread-safe; one object per protected domain.
#ifndef FTSYNC_SPEC_SPECULATION_POLICY_H_
#define FTSYNC_SPEC_SPECULATION_POLICY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/status.h"

namespace ftsync::internal {

enum class SpeculationPolicyKind {
  kNone,
  kEager,
  kHistory,
  kFill,
};

// "none", "eager", "history", "fill".
const char* SpeculationPolicyName(SpeculationPolicyKind kind);
// The inverse of SpeculationPolicyName; kInvalidArgument naming `name` and
// the accepted names otherwise.
Result<SpeculationPolicyKind> ParseSpeculationPolicy(std::string_view name);
// Every kind, in declaration order.
std::vector<SpeculationPolicyKind> AllSpeculationPolicies();

struct SpeculationOptions {
  SpeculationPolicyKind kind = SpeculationPolicyKind::kHistory;
  // Nominal ticks per epoch T (>= 2): Tick() takes t in 1..T-1 and the
  // epoch ends at T. A caller whose ticks drift may pass any increasing t
  // >= 1; ticks at or past T count as "no time left".
  uint32_t ticks_per_epoch = 10;
  // Bound on total / baseline over the window; 0 disables the budget.
  // Values in (0, 1] allow no speculation at all.
  double budget_ratio = 1.2;
  // Window of the budget, in epochs (>= 1).
  uint32_t budget_window = 16;
  // Bytes per page, to convert EpochBytes into pages (> 0).
  size_t page_size = 4096;
  // True when the caller re-arms sent pages (Domain::SupportsRearmDirty).
  // False for a peek-only backend: a sent page then stays in every later
  // peek and in the final set, so rewrites are invisible during the epoch;
  // the policy sends a page at most once per epoch and learns only from
  // EndEpoch's `rewritten` argument.
  bool can_rearm = true;
};

// The default options of a policy: history and fill with the 1.2 budget,
// eager and none without a budget (eager is the unthrottled reference).
SpeculationOptions DefaultSpeculationOptions(SpeculationPolicyKind kind);

// Counts of one epoch, or summed over epochs (see the header comment).
struct SpeculationStats {
  uint64_t epochs = 0;
  uint64_t baseline_pages = 0;
  uint64_t speculative_sends = 0;
  uint64_t wasted_sends = 0;
  uint64_t final_pages = 0;
  uint64_t saved_pages = 0;      // sent pages absent from the final set
  uint64_t throttled_pages = 0;  // candidates held back by the budget

  uint64_t total_pages() const { return speculative_sends + final_pages; }
  void Add(const SpeculationStats& o);
};

// Exact bytes of an epoch, for a caller whose encodings (deltas,
// compression) make pages cost different amounts. All three or none.
struct EpochBytes {
  uint64_t baseline = 0;     // what the epoch would cost without speculation
  uint64_t speculative = 0;  // bytes shipped at ticks
  uint64_t final = 0;        // bytes shipped at the epoch's end
};

class SpeculationPolicy {
 public:
  // A policy for a domain of `frames` frames. kInvalidArgument for frames
  // == 0 or > 2^32-1, ticks_per_epoch outside 2..60000, budget_window ==
  // 0, page_size == 0 or a negative budget_ratio.
  static Result<std::unique_ptr<SpeculationPolicy>> Create(
      uint64_t frames, const SpeculationOptions& options);

  SpeculationPolicy(const SpeculationPolicy&) = delete;
  SpeculationPolicy& operator=(const SpeculationPolicy&) = delete;
  ~SpeculationPolicy();

  // Starts an epoch. kFailedPrecondition when one is already open.
  Status BeginEpoch();

  // One tick of the open epoch. `peek` is what PeekDirty returned at this
  // tick (size frames), taken after the previous tick's pages were
  // re-armed. `tick` >= 1 and greater than the previous tick of this epoch.
  // Returns the pages to send now, ascending and distinct; the span stays
  // valid until the next call on this object. For each of them the caller
  // must RearmDirty, then read, then ship (hypervisor.h explains why in
  // that order). The policy assumes all of them are shipped.
  // Errors (nothing changes): kFailedPrecondition outside an epoch,
  // kInvalidArgument for a bad tick or a bitmap of the wrong size.
  Result<std::span<const uint64_t>> Tick(uint32_t tick, const DirtyBitmap& peek);

  // Pages of the last Tick's answer that were not shipped after all (the
  // re-arm or read failed). If their re-arm succeeded the caller must also
  // Redirty them, so the final fetch reports them. Pages not in the last
  // answer are ignored. kFailedPrecondition outside an epoch.
  Status Unsent(std::span<const uint64_t> pfns);

  // Ends the open epoch. `final_dirty` is the epoch's FetchAndClearDirty
  // set (size frames). `rewritten`, for a peek-only backend (can_rearm
  // false), names the sent pages whose contents changed after their
  // speculative copy (for example, those with a non-empty delta); sent
  // pages not in it count as saved even though the final set holds them.
  // Ignored (may be null) with can_rearm. `bytes`, when given, replaces the
  // page counts in the budget's window.
  // Errors (the epoch stays open): kFailedPrecondition outside an epoch,
  // kInvalidArgument for a bitmap of the wrong size.
  Status EndEpoch(const DirtyBitmap& final_dirty,
                  const DirtyBitmap* rewritten = nullptr,
                  const EpochBytes* bytes = nullptr);

  // Counts of the last ended epoch, and of all ended epochs.
  const SpeculationStats& last_epoch() const { return last_; }
  const SpeculationStats& totals() const { return totals_; }
  // total / baseline over the budget window (1.0 before any epoch ends).
  double WindowRatio() const;
  // Current estimate of the fraction of speculative sends that are wasted.
  double waste_rate() const { return waste_rate_; }

  const SpeculationOptions& options() const { return opts_; }
  uint64_t frames() const { return frames_; }
  bool in_epoch() const { return in_epoch_; }

  // Introspection of the per-page history, for tests and tuning.
  // Suppression level (0: may be sent) and strikes of `pfn` (< frames).
  uint32_t suppression(uint64_t pfn) const;
  uint32_t strikes(uint64_t pfn) const;
  // The late tick (see history above); 0 when none is known.
  uint32_t late_tick(uint64_t pfn) const;

 private:
  SpeculationPolicy(uint64_t frames, const SpeculationOptions& options);

  enum : uint8_t { kClean = 0, kDirty, kSent, kRewritten };

  // A speculative copy of `pfn` was found rewritten at tick `tick`.
  void NoteWaste(uint64_t pfn, uint32_t tick);
  // Candidates of this tick, best first, by policy.
  void Choose(uint32_t tick);
  // Expected waste the budget still allows now (infinity: no budget).
  double BudgetRoom() const;
  // How many new sends `room` covers at the current waste rate.
  size_t Allowance(double room) const;
  // fill: estimated chance that `pfn` sent at the last tick is not
  // rewritten before the epoch ends.
  double FillOdds(uint64_t pfn) const;
  // fill: appends the last tick's gambles to candidates_.
  void AddFill(uint32_t tick, double room);

  const uint64_t frames_;
  const SpeculationOptions opts_;

  // Per page, across epochs.
  std::vector<uint16_t> late_;         // late tick; 0 none
  std::vector<uint8_t> level_;         // suppression: epochs left
  std::vector<uint8_t> strikes_;
  std::vector<uint8_t> listed_;        // 1: in suppressed_
  std::vector<uint64_t> suppressed_;   // pages with level_ or late_ set

  // Per page, this epoch (reset through touched_).
  std::vector<uint8_t> state_;
  std::vector<uint16_t> sends_;        // speculative sends of the page
  std::vector<uint16_t> sent_tick_;    // tick of the latest send
  std::vector<uint8_t> filled_;        // 1: sent as fill's gamble
  // fill: outcomes of the page's last-tick gambles, across epochs.
  std::vector<uint8_t> fill_ok_;
  std::vector<uint8_t> fill_bad_;
  std::vector<uint64_t> fill_;
  std::vector<uint64_t> touched_;      // pages whose state_ is not kClean
  std::vector<uint64_t> answer_;       // the last Tick's pages
  std::vector<uint64_t> candidates_;

  bool in_epoch_ = false;
  uint64_t epoch_index_ = 0;           // epochs begun so far
  uint32_t last_tick_ = 0;
  SpeculationStats epoch_;             // the open epoch so far
  uint64_t inflight_ = 0;              // pages in kSent
  uint64_t epoch_fill_sends_ = 0;

  // Budget window: per ended epoch, baseline and total in pages.
  std::vector<double> win_baseline_;
  std::vector<double> win_total_;
  size_t win_next_ = 0;
  size_t win_count_ = 0;
  double waste_rate_ = 0.5;            // prior: half the sends are wasted

  SpeculationStats last_;
  SpeculationStats totals_;
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SPEC_SPECULATION_POLICY_H_
