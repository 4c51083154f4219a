// ftsync: SpeculationPolicy (see speculation_policy.h).
#include "spec/speculation_policy.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

namespace ftsync::internal {
namespace {

struct NamedPolicy {
  SpeculationPolicyKind kind;
  const char* name;
};
constexpr NamedPolicy kPolicies[] = {
    {SpeculationPolicyKind::kNone, "none"},
    {SpeculationPolicyKind::kEager, "eager"},
    {SpeculationPolicyKind::kHistory, "history"},
    {SpeculationPolicyKind::kFill, "fill"},
};

// Strikes saturate here; the suppression level added by a strike is
// 1 << strikes, so at most 2^kMaxStrikes epochs without a write.
constexpr uint8_t kMaxStrikes = 6;
// Weight of a new sample in the waste rate's moving average.
constexpr double kWasteGain = 0.25;
// Lowest waste rate assumed when converting the allowance into sends.
constexpr double kMinWasteRate = 0.02;
// fill: pages whose estimated chance of surviving the last tick is lower
// are not worth a send.
constexpr double kMinFillOdds = 0.2;
// fill: outcome counts saturate here (older outcomes fade by halving).
constexpr uint8_t kMaxOutcomes = 32;

template <typename F>
void ForEachSetBit(const DirtyBitmap& b, F f) {
  const uint64_t* w = b.words();
  for (size_t i = 0; i < b.word_count(); ++i) {
    uint64_t x = w[i];
    while (x != 0) {
      f(uint64_t(i) * 64 + uint64_t(__builtin_ctzll(x)));
      x &= x - 1;
    }
  }
}

}  // namespace

const char* SpeculationPolicyName(SpeculationPolicyKind kind) {
  for (const auto& p : kPolicies)
    if (p.kind == kind) return p.name;
  return "?";
}

Result<SpeculationPolicyKind> ParseSpeculationPolicy(std::string_view name) {
  for (const auto& p : kPolicies)
    if (name == p.name) return p.kind;
  return Status(Errc::kInvalidArgument, "unknown speculation policy '" + std::string(name) +
                                            "' (expected none, eager, history or fill)");
}

std::vector<SpeculationPolicyKind> AllSpeculationPolicies() {
  std::vector<SpeculationPolicyKind> v;
  for (const auto& p : kPolicies) v.push_back(p.kind);
  return v;
}

SpeculationOptions DefaultSpeculationOptions(SpeculationPolicyKind kind) {
  SpeculationOptions o;
  o.kind = kind;
  if (kind == SpeculationPolicyKind::kNone || kind == SpeculationPolicyKind::kEager)
    o.budget_ratio = 0;
  return o;
}

void SpeculationStats::Add(const SpeculationStats& o) {
  epochs += o.epochs;
  baseline_pages += o.baseline_pages;
  speculative_sends += o.speculative_sends;
  wasted_sends += o.wasted_sends;
  final_pages += o.final_pages;
  saved_pages += o.saved_pages;
  throttled_pages += o.throttled_pages;
}

Result<std::unique_ptr<SpeculationPolicy>> SpeculationPolicy::Create(
    uint64_t frames, const SpeculationOptions& o) {
  auto bad = [](const std::string& why) {
    return Status(Errc::kInvalidArgument, "speculation policy: " + why);
  };
  if (frames == 0) return bad("no frames");
  if (frames > std::numeric_limits<uint32_t>::max()) return bad("too many frames");
  if (o.ticks_per_epoch < 2 || o.ticks_per_epoch > 60000)
    return bad("ticks per epoch " + std::to_string(o.ticks_per_epoch) + " outside 2..60000");
  if (o.budget_window == 0) return bad("budget window of 0 epochs");
  if (o.page_size == 0) return bad("page size 0");
  if (!(o.budget_ratio >= 0)) return bad("negative budget ratio");
  return std::unique_ptr<SpeculationPolicy>(new SpeculationPolicy(frames, o));
}

SpeculationPolicy::SpeculationPolicy(uint64_t frames, const SpeculationOptions& o)
    : frames_(frames),
      opts_(o),
      late_(frames, 0),
      level_(frames, 0),
      strikes_(frames, 0),
      listed_(frames, 0),
      state_(frames, kClean),
      sends_(frames, 0),
      sent_tick_(frames, 0),
      filled_(frames, 0),
      fill_ok_(frames, 0),
      fill_bad_(frames, 0),
      win_baseline_(o.budget_window, 0.0),
      win_total_(o.budget_window, 0.0) {}

SpeculationPolicy::~SpeculationPolicy() = default;

uint32_t SpeculationPolicy::suppression(uint64_t pfn) const {
  return pfn < frames_ ? level_[pfn] : 0;
}
uint32_t SpeculationPolicy::strikes(uint64_t pfn) const {
  return pfn < frames_ ? strikes_[pfn] : 0;
}
uint32_t SpeculationPolicy::late_tick(uint64_t pfn) const {
  return pfn < frames_ ? late_[pfn] : 0;
}

double SpeculationPolicy::WindowRatio() const {
  double b = 0, t = 0;
  for (size_t i = 0; i < win_count_; ++i) {
    b += win_baseline_[i];
    t += win_total_[i];
  }
  return b > 0 ? t / b : 1.0;
}

Status SpeculationPolicy::BeginEpoch() {
  if (in_epoch_)
    return Status(Errc::kFailedPrecondition, "speculation policy: epoch already open");
  in_epoch_ = true;
  ++epoch_index_;
  last_tick_ = 0;
  epoch_ = SpeculationStats{};
  epoch_.epochs = 1;
  inflight_ = 0;
  epoch_fill_sends_ = 0;
  answer_.clear();
  return Status::OK();
}

void SpeculationPolicy::NoteWaste(uint64_t pfn, uint32_t tick) {
  const uint32_t T = opts_.ticks_per_epoch;
  const uint32_t since_send = tick - sent_tick_[pfn];
  // Rewritten within one tick of its copy: written all the time.
  uint32_t late = since_send <= 1 ? T : std::min(tick, T);
  if (late > late_[pfn]) late_[pfn] = uint16_t(late);
  state_[pfn] = kRewritten;
  --inflight_;
  ++epoch_.wasted_sends;
}

double SpeculationPolicy::BudgetRoom() const {
  if (opts_.budget_ratio <= 0) return std::numeric_limits<double>::infinity();
  double b = double(epoch_.baseline_pages), t = 0;
  for (size_t i = 0; i < win_count_; ++i) {
    b += win_baseline_[i];
    t += win_total_[i];
  }
  // Waste so far: the window's, this epoch's confirmed, and the expected
  // waste of the sends still in flight.
  double waste = (t - (b - double(epoch_.baseline_pages))) + double(epoch_.wasted_sends) +
                 waste_rate_ * double(inflight_);
  return (opts_.budget_ratio - 1.0) * b - waste;
}

size_t SpeculationPolicy::Allowance(double room) const {
  if (std::isinf(room)) return SIZE_MAX;
  if (room <= 0) return 0;
  double n = std::floor(room / std::max(waste_rate_, kMinWasteRate));
  return n >= double(SIZE_MAX / 2) ? SIZE_MAX / 2 : size_t(n);
}

double SpeculationPolicy::FillOdds(uint64_t pfn) const {
  return (double(fill_ok_[pfn]) + 1.0) / (double(fill_ok_[pfn]) + double(fill_bad_[pfn]) + 2.0);
}

void SpeculationPolicy::AddFill(uint32_t tick, double room) {
  // Only at the last tick, only with a budget, only what it still covers.
  if (opts_.kind != SpeculationPolicyKind::kFill || opts_.budget_ratio <= 0) return;
  if (tick + 1 < opts_.ticks_per_epoch) return;
  room -= waste_rate_ * double(candidates_.size());
  if (room <= 0) return;
  fill_.clear();
  for (uint64_t p : touched_) {
    // What history held back (its own candidates are already chosen).
    if (state_[p] != kDirty || (level_[p] == 0 && tick > late_[p])) continue;
    if (FillOdds(p) >= kMinFillOdds) fill_.push_back(p);
  }
  std::sort(fill_.begin(), fill_.end(), [&](uint64_t a, uint64_t b) {
    double oa = FillOdds(a), ob = FillOdds(b);
    return oa != ob ? oa > ob : a < b;
  });
  for (uint64_t p : fill_) {
    double risk = 1.0 - FillOdds(p);
    if (risk > room) break;
    room -= risk;
    candidates_.push_back(p);
    filled_[p] = 1;
    ++epoch_fill_sends_;
  }
}

void SpeculationPolicy::Choose(uint32_t tick) {
  candidates_.clear();
  switch (opts_.kind) {
    case SpeculationPolicyKind::kNone:
      return;
    case SpeculationPolicyKind::kEager:
      for (uint64_t p : touched_) {
        if (state_[p] == kDirty || (state_[p] == kRewritten && opts_.can_rearm))
          candidates_.push_back(p);
      }
      return;  // pfn order of first sight
    case SpeculationPolicyKind::kHistory:
    case SpeculationPolicyKind::kFill:
      for (uint64_t p : touched_) {
        if (state_[p] != kDirty || level_[p] != 0 || tick <= late_[p]) continue;
        candidates_.push_back(p);
      }
      // Lowest risk first: fewest strikes, then earliest late tick, then pfn.
      std::sort(candidates_.begin(), candidates_.end(), [&](uint64_t a, uint64_t b) {
        if (strikes_[a] != strikes_[b]) return strikes_[a] < strikes_[b];
        if (late_[a] != late_[b]) return late_[a] < late_[b];
        return a < b;
      });
      return;
  }
}

Result<std::span<const uint64_t>> SpeculationPolicy::Tick(uint32_t tick,
                                                          const DirtyBitmap& peek) {
  if (!in_epoch_) return Status(Errc::kFailedPrecondition, "speculation policy: Tick outside an epoch");
  if (tick == 0 || tick <= last_tick_ || tick > 60000)
    return Status(Errc::kInvalidArgument,
                  "speculation policy: tick " + std::to_string(tick) + " after tick " +
                      std::to_string(last_tick_) + " (ticks start at 1 and increase)");
  if (peek.size() != frames_)
    return Status(Errc::kInvalidArgument, "speculation policy: peeked bitmap has " +
                                              std::to_string(peek.size()) + " frames, not " +
                                              std::to_string(frames_));
  last_tick_ = tick;
  ForEachSetBit(peek, [&](uint64_t p) {
    switch (state_[p]) {
      case kClean:
        state_[p] = kDirty;
        touched_.push_back(p);
        ++epoch_.baseline_pages;
        break;
      case kSent:
        if (opts_.can_rearm) NoteWaste(p, tick);  // else it stays in every peek
        break;
      default:
        break;
    }
  });

  Choose(tick);
  const double room = BudgetRoom();
  size_t allow = Allowance(room);
  if (candidates_.size() > allow) {
    epoch_.throttled_pages += candidates_.size() - allow;
    candidates_.resize(allow);
  }
  AddFill(tick, room);
  answer_.assign(candidates_.begin(), candidates_.end());
  std::sort(answer_.begin(), answer_.end());
  for (uint64_t p : answer_) {
    state_[p] = kSent;
    sent_tick_[p] = uint16_t(tick);
    ++sends_[p];
    ++inflight_;
    ++epoch_.speculative_sends;
  }
  return std::span<const uint64_t>(answer_);
}

Status SpeculationPolicy::Unsent(std::span<const uint64_t> pfns) {
  if (!in_epoch_) return Status(Errc::kFailedPrecondition, "speculation policy: Unsent outside an epoch");
  for (uint64_t p : pfns) {
    if (!std::binary_search(answer_.begin(), answer_.end(), p)) continue;
    if (state_[p] != kSent) continue;
    --sends_[p];
    --inflight_;
    --epoch_.speculative_sends;
    if (filled_[p]) {
      filled_[p] = 0;
      --epoch_fill_sends_;
    }
    // A page sent before and rewritten goes back to "rewritten".
    state_[p] = sends_[p] > 0 ? kRewritten : kDirty;
  }
  // Each page is taken back at most once.
  answer_.erase(std::remove_if(answer_.begin(), answer_.end(),
                               [&](uint64_t p) { return state_[p] != kSent; }),
                answer_.end());
  return Status::OK();
}

Status SpeculationPolicy::EndEpoch(const DirtyBitmap& final_dirty, const DirtyBitmap* rewritten,
                                   const EpochBytes* bytes) {
  if (!in_epoch_) return Status(Errc::kFailedPrecondition, "speculation policy: EndEpoch outside an epoch");
  if (final_dirty.size() != frames_ || (rewritten != nullptr && !opts_.can_rearm &&
                                         rewritten->size() != frames_))
    return Status(Errc::kInvalidArgument, "speculation policy: final bitmap has " +
                                              std::to_string(final_dirty.size()) +
                                              " frames, not " + std::to_string(frames_));
  const uint32_t T = opts_.ticks_per_epoch;
  uint64_t final_pages = 0;
  ForEachSetBit(final_dirty, [&](uint64_t p) {
    ++final_pages;
    switch (state_[p]) {
      case kClean:
        state_[p] = kDirty;
        touched_.push_back(p);
        ++epoch_.baseline_pages;
        break;
      case kSent:
        if (opts_.can_rearm) {
          // Rewritten after the last tick: its send was wasted.
          NoteWaste(p, std::max(T, sent_tick_[p] + 1u));
        } else if (rewritten != nullptr && rewritten->Test(p)) {
          // Rewritten at some unknown tick: assume right after the send.
          NoteWaste(p, sent_tick_[p] + 1u);
        } else {
          // Peek-only: the page is in the final set because it was never
          // re-armed; unchanged, it costs (next to) nothing at the end.
          --final_pages;
        }
        break;
      default:
        break;
    }
  });
  epoch_.final_pages = final_pages;

  // Learn, and reset the epoch's per-page state.
  uint64_t fill_wasted = 0;
  for (uint64_t p : touched_) {
    const uint8_t st = state_[p];
    if (filled_[p]) {
      // A gamble of the last tick: it only teaches the page's odds.
      uint8_t& n = st == kSent ? fill_ok_[p] : fill_bad_[p];
      if (st != kSent) ++fill_wasted;
      if (++n >= kMaxOutcomes) {
        fill_ok_[p] /= 2;
        fill_bad_[p] /= 2;
      }
      if (st == kSent) ++epoch_.saved_pages;
      continue;
    }
    if (st == kSent) {
      ++epoch_.saved_pages;
      if (strikes_[p] > 0) --strikes_[p];
    } else if (st == kRewritten) {
      if (strikes_[p] < kMaxStrikes) ++strikes_[p];
      if (!listed_[p]) {
        listed_[p] = 1;
        suppressed_.push_back(p);
      }
      level_[p] = uint8_t(std::max<unsigned>(level_[p], 1u << strikes_[p]));
    }
  }
  // Suppression runs out epoch by epoch; a page not written at all in an
  // epoch also forgets its late tick.
  size_t keep = 0;
  for (uint64_t p : suppressed_) {
    if (level_[p] > 0) --level_[p];
    if (state_[p] == kClean) late_[p] = 0;
    if (level_[p] > 0 || late_[p] != 0) {
      suppressed_[keep++] = p;
    } else {
      listed_[p] = 0;
    }
  }
  suppressed_.resize(keep);
  for (uint64_t p : touched_) {
    state_[p] = kClean;
    sends_[p] = 0;
    filled_[p] = 0;
  }
  touched_.clear();
  answer_.clear();

  // Budget window and waste rate.
  double base = double(epoch_.baseline_pages);
  double total = double(epoch_.total_pages());
  if (bytes != nullptr) {
    base = double(bytes->baseline) / double(opts_.page_size);
    total = double(bytes->speculative + bytes->final) / double(opts_.page_size);
  }
  win_baseline_[win_next_] = base;
  win_total_[win_next_] = total;
  win_next_ = (win_next_ + 1) % win_baseline_.size();
  win_count_ = std::min(win_count_ + 1, win_baseline_.size());
  // The waste rate of the policy's own choices (fill's gambles have their
  // per-page odds instead).
  const uint64_t own_sends = epoch_.speculative_sends - epoch_fill_sends_;
  if (own_sends > 0) {
    double rate = double(epoch_.wasted_sends - fill_wasted) / double(own_sends);
    waste_rate_ += kWasteGain * (rate - waste_rate_);
  }

  last_ = epoch_;
  totals_.Add(epoch_);
  in_epoch_ = false;
  inflight_ = 0;
  return Status::OK();
}

}  // namespace ftsync::internal
