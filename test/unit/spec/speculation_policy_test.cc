// SpeculationPolicy on synthetic write histories, driven through a
// FakeDomain's PeekDirty / RearmDirty exactly as a checkpointer would.
#include "spec/speculation_policy.h"

#include <catch2/catch.hpp>

#include <functional>
#include <map>
#include <set>
#include <vector>

#include "testing/fake_domain.h"

namespace ftsync::internal {
namespace {

using testing::FakeDomain;

// Which pages the guest writes during tick interval t (t = 1..T; interval
// T is the one just before the epoch ends), in epoch e (from 0).
using Script = std::function<std::vector<uint64_t>(uint64_t e, uint32_t t)>;

struct Run {
  // pfn -> ticks at which it was sent, per epoch.
  std::vector<std::map<uint64_t, std::vector<uint32_t>>> sent;
  std::vector<DirtyBitmap> finals;
};

// Drives `epochs` epochs of `script` on a fresh FakeDomain.
Run Drive(SpeculationPolicy* policy, uint64_t frames, uint64_t epochs, const Script& script,
          bool rearm = true) {
  FakeDomain d(frames, 64);
  d.SetSpeculationSupport(true, rearm);
  REQUIRE(d.EnableDirtyLog().ok());
  const uint32_t T = policy->options().ticks_per_epoch;
  Run run;
  uint8_t byte = 0;
  for (uint64_t e = 0; e < epochs; ++e) {
    REQUIRE(policy->BeginEpoch().ok());
    run.sent.emplace_back();
    for (uint32_t t = 1; t <= T; ++t) {
      for (uint64_t p : script(e, t)) d.Fill(p, ++byte);
      if (t == T) break;
      DirtyBitmap peek;
      REQUIRE(d.PeekDirty(&peek).ok());
      auto send = policy->Tick(t, peek);
      REQUIRE(send.ok());
      if (rearm) REQUIRE(d.RearmDirty(*send).ok());
      for (uint64_t p : *send) run.sent.back()[p].push_back(t);
    }
    DirtyBitmap final_dirty;
    REQUIRE(d.FetchAndClearDirty(&final_dirty).ok());
    REQUIRE(policy->EndEpoch(final_dirty).ok());
    run.finals.push_back(final_dirty);
  }
  return run;
}

std::unique_ptr<SpeculationPolicy> Make(SpeculationPolicyKind kind, uint64_t frames,
                                        double budget = -1, uint32_t ticks = 10) {
  SpeculationOptions o = DefaultSpeculationOptions(kind);
  o.ticks_per_epoch = ticks;
  if (budget >= 0) o.budget_ratio = budget;
  auto p = SpeculationPolicy::Create(frames, o);
  REQUIRE(p.ok());
  return std::move(p).value();
}

double Ratio(uint64_t a, uint64_t b) { return b == 0 ? 0.0 : double(a) / double(b); }

// Page 5 is written at every tick; one cold page per epoch (10 + e % 40) is
// written once, at tick 2; page 60 is written at tick 1 of every epoch and
// never again in it.
std::vector<uint64_t> HotAndCold(uint64_t e, uint32_t t) {
  std::vector<uint64_t> w = {5};
  if (t == 1) w.push_back(60);
  if (t == 2) w.push_back(10 + e % 40);
  return w;
}

TEST_CASE("speculation: names round-trip", "[spec]") {
  for (auto k : AllSpeculationPolicies()) {
    auto parsed = ParseSpeculationPolicy(SpeculationPolicyName(k));
    REQUIRE(parsed.ok());
    CHECK(*parsed == k);
  }
  auto bad = ParseSpeculationPolicy("greedy");
  CHECK(bad.status().code() == Errc::kInvalidArgument);
  CHECK(bad.status().context().find("greedy") != std::string::npos);
}

TEST_CASE("speculation: history never sends a hot page after learning, sends cold ones",
          "[spec]") {
  auto policy = Make(SpeculationPolicyKind::kHistory, 64, /*budget=*/0);
  Run run = Drive(policy.get(), 64, 30, HotAndCold);
  // The hot page is sent at most in the first epoch, then never.
  uint64_t hot_sends = 0;
  for (uint64_t e = 0; e < run.sent.size(); ++e) {
    if (run.sent[e].count(5)) {
      INFO("epoch " << e);
      CHECK(e == 0);
      hot_sends += run.sent[e][5].size();
    }
  }
  CHECK(hot_sends <= 1);
  CHECK(policy->late_tick(5) == 10);  // rewritten right after its send: hot
  CHECK(policy->strikes(5) == 1);
  // Cold pages: sent at the tick they were written, and saved.
  for (uint64_t e = 1; e < run.sent.size(); ++e) {
    INFO("epoch " << e);
    CHECK(run.sent[e].count(10 + e % 40) == 1);
    CHECK(run.sent[e][60] == std::vector<uint32_t>{1});
    // Only the hot page is left for the epoch's end.
    std::vector<uint64_t> left;
    run.finals[e].AppendSetBits(&left);
    CHECK(left == std::vector<uint64_t>{5});
  }
  const SpeculationStats& s = policy->totals();
  CHECK(s.baseline_pages == 30 * 3);
  CHECK(s.wasted_sends <= 1);
  CHECK(s.saved_pages >= 2 * 29);
  CHECK(s.final_pages <= 30 + 1);
  CHECK(s.total_pages() <= s.baseline_pages + 1);
}

TEST_CASE("speculation: eager resends the hot page at every tick", "[spec]") {
  auto policy = Make(SpeculationPolicyKind::kEager, 64);
  Run run = Drive(policy.get(), 64, 10, HotAndCold);
  for (uint64_t e = 0; e < run.sent.size(); ++e) {
    INFO("epoch " << e);
    CHECK(run.sent[e][5] == std::vector<uint32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(run.finals[e].Test(5));
  }
  const SpeculationStats& s = policy->totals();
  CHECK(s.wasted_sends == 10 * 9);  // every send of page 5
  CHECK(Ratio(s.total_pages(), s.baseline_pages) > 3.0);
  // It leaves no less than history at the end: the hot page is still there.
  CHECK(s.final_pages == 10);
}

TEST_CASE("speculation: none sends nothing and counts the baseline", "[spec]") {
  auto policy = Make(SpeculationPolicyKind::kNone, 64);
  Run run = Drive(policy.get(), 64, 5, HotAndCold);
  const SpeculationStats& s = policy->totals();
  CHECK(s.speculative_sends == 0);
  CHECK(s.final_pages == s.baseline_pages);
  CHECK(s.baseline_pages == 15);
  CHECK(policy->WindowRatio() == 1.0);
}

TEST_CASE("speculation: a budget throttles eager within 1.2x", "[spec]") {
  // Eight hot pages written at every tick, two cold pages per epoch.
  Script script = [](uint64_t e, uint32_t t) {
    std::vector<uint64_t> w = {0, 1, 2, 3, 4, 5, 6, 7};
    if (t == 3) w.insert(w.end(), {20 + (e * 2) % 200, 21 + (e * 2) % 200});
    return w;
  };
  auto free_eager = Make(SpeculationPolicyKind::kEager, 256);
  Drive(free_eager.get(), 256, 60, script);
  auto budget_eager = Make(SpeculationPolicyKind::kEager, 256, /*budget=*/1.2);
  Drive(budget_eager.get(), 256, 60, script);
  const SpeculationStats& f = free_eager->totals();
  const SpeculationStats& b = budget_eager->totals();
  INFO("free " << f.total_pages() << "/" << f.baseline_pages << ", budget "
               << b.total_pages() << "/" << b.baseline_pages);
  CHECK(Ratio(f.total_pages(), f.baseline_pages) > 5.0);
  CHECK(Ratio(b.total_pages(), b.baseline_pages) <= 1.2);
  CHECK(budget_eager->WindowRatio() <= 1.25);
  CHECK(b.throttled_pages > 0);
  CHECK(b.speculative_sends > 0);  // throttled, not switched off
  CHECK(budget_eager->waste_rate() > 0.5);
  // A zero-width budget (ratio 1) allows nothing.
  auto no_room = Make(SpeculationPolicyKind::kEager, 256, /*budget=*/1.0);
  Drive(no_room.get(), 256, 5, script);
  CHECK(no_room->totals().speculative_sends == 0);
}

TEST_CASE("speculation: fill spends the budget on the best last-tick odds", "[spec]") {
  // Pages 0..7 are written at every tick (never survive the last one);
  // pages 8..15 at ticks 1..8 only (always survive it); 40 cold pages
  // per epoch written once at tick 1 give the budget room.
  Script script = [](uint64_t e, uint32_t t) {
    std::vector<uint64_t> w = {0, 1, 2, 3, 4, 5, 6, 7};
    if (t <= 8) w.insert(w.end(), {8, 9, 10, 11, 12, 13, 14, 15});
    if (t == 1)
      for (uint64_t i = 0; i < 40; ++i) w.push_back(100 + (e * 40 + i) % 800);
    return w;
  };
  auto history = Make(SpeculationPolicyKind::kHistory, 1024);
  Run h = Drive(history.get(), 1024, 60, script);
  auto fill = Make(SpeculationPolicyKind::kFill, 1024);
  Run f = Drive(fill.get(), 1024, 60, script);
  const SpeculationStats& hs = history->totals();
  const SpeculationStats& fs = fill->totals();
  INFO("history end " << hs.final_pages << " total " << hs.total_pages() << "; fill end "
                      << fs.final_pages << " total " << fs.total_pages() << " of baseline "
                      << fs.baseline_pages);
  CHECK(hs.baseline_pages == fs.baseline_pages);
  // History never sends the rewritten-every-tick pages 8..15 again (they
  // are rewritten right after any send before tick 9)...
  for (uint64_t e = 5; e < h.sent.size(); ++e) CHECK(h.sent[e].count(12) == 0);
  // ... fill tries them at tick 9, learns that they survive, keeps doing it.
  uint64_t fill_saved_12 = 0;
  for (uint64_t e = 5; e < f.sent.size(); ++e) {
    if (f.sent[e].count(12) && f.sent[e][12] == std::vector<uint32_t>{9} &&
        !f.finals[e].Test(12))
      ++fill_saved_12;
  }
  CHECK(fill_saved_12 >= 40);
  // Pages 0..7 are abandoned after a few failed tries.
  uint64_t late_tries_0 = 0;
  for (uint64_t e = 20; e < f.sent.size(); ++e) late_tries_0 += f.sent[e].count(0);
  CHECK(late_tries_0 == 0);
  CHECK(fs.final_pages < hs.final_pages);
  CHECK(Ratio(fs.total_pages(), fs.baseline_pages) <= 1.2);
}

TEST_CASE("speculation: history sends a twice-written page after its late tick",
          "[spec]") {
  // Page 3 is written at ticks 2 and 6 of every epoch; page 9 at tick 1.
  Script script = [](uint64_t, uint32_t t) {
    std::vector<uint64_t> w;
    if (t == 2 || t == 6) w.push_back(3);
    if (t == 1) w.push_back(9);
    return w;
  };
  auto policy = Make(SpeculationPolicyKind::kHistory, 16, /*budget=*/0);
  Run run = Drive(policy.get(), 16, 20, script);
  // Epoch 0: sent at tick 2, rewritten at 6: one wasted send.
  CHECK(run.sent[0][3] == std::vector<uint32_t>{2});
  CHECK(run.finals[0].Test(3));  // dirty again since tick 6
  CHECK(policy->late_tick(3) == 6);
  // After its suppression: sent at tick 7 (after the late tick), and saved.
  uint64_t saved_epochs = 0;
  for (uint64_t e = 1; e < run.sent.size(); ++e) {
    INFO("epoch " << e);
    auto it = run.sent[e].find(3);
    if (it == run.sent[e].end()) continue;
    CHECK(it->second == std::vector<uint32_t>{7});
    CHECK_FALSE(run.finals[e].Test(3));
    ++saved_epochs;
  }
  CHECK(saved_epochs >= 16);
  CHECK(policy->totals().wasted_sends == 1);
  CHECK(policy->strikes(3) == 0);
}

TEST_CASE("speculation: suppression drains only while the page is not written", "[spec]") {
  // Page 2 is hot for 6 epochs, silent for 40, then written once at tick 1.
  Script script = [](uint64_t e, uint32_t t) {
    std::vector<uint64_t> w;
    if (e < 6) w.push_back(2);
    if (e == 46 && t == 1) w.push_back(2);
    return w;
  };
  auto policy = Make(SpeculationPolicyKind::kHistory, 16, /*budget=*/0);
  Run run = Drive(policy.get(), 16, 47, script);
  uint64_t hot_epochs_sent = 0;
  for (uint64_t e = 0; e < 6; ++e) hot_epochs_sent += run.sent[e].count(2);
  CHECK(hot_epochs_sent == 1);
  CHECK(policy->suppression(2) == 0);
  CHECK(run.sent[46].count(2) == 1);
  CHECK_FALSE(run.finals[46].Test(2));
}

TEST_CASE("speculation: peek-only backends send once and learn from `rewritten`", "[spec]") {
  SpeculationOptions o = DefaultSpeculationOptions(SpeculationPolicyKind::kEager);
  o.can_rearm = false;
  auto p = SpeculationPolicy::Create(8, o);
  REQUIRE(p.ok());
  SpeculationPolicy& policy = **p;
  FakeDomain d(8, 64);
  d.SetSpeculationSupport(true, false);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(policy.BeginEpoch().ok());
  d.Fill(1, 1);
  d.Fill(2, 2);
  DirtyBitmap peek;
  REQUIRE(d.PeekDirty(&peek).ok());
  auto s1 = policy.Tick(1, peek);
  REQUIRE(s1.ok());
  CHECK(std::vector<uint64_t>(s1->begin(), s1->end()) == std::vector<uint64_t>{1, 2});
  d.Fill(1, 3);  // rewritten; the peek cannot tell
  REQUIRE(d.PeekDirty(&peek).ok());
  auto s2 = policy.Tick(2, peek);
  REQUIRE(s2.ok());
  CHECK(s2->empty());  // never twice in an epoch
  DirtyBitmap final_dirty, rewritten(8);
  REQUIRE(d.FetchAndClearDirty(&final_dirty).ok());
  CHECK(final_dirty.Count() == 2);
  rewritten.Set(1);
  REQUIRE(policy.EndEpoch(final_dirty, &rewritten).ok());
  CHECK(policy.last_epoch().wasted_sends == 1);
  CHECK(policy.last_epoch().saved_pages == 1);
  CHECK(policy.last_epoch().final_pages == 1);
  CHECK(policy.last_epoch().baseline_pages == 2);
}

TEST_CASE("speculation: Unsent takes pages back", "[spec]") {
  auto policy = Make(SpeculationPolicyKind::kEager, 8);
  REQUIRE(policy->BeginEpoch().ok());
  DirtyBitmap peek(8);
  peek.Set(3);
  peek.Set(4);
  auto s = policy->Tick(1, peek);
  REQUIRE(s.ok());
  REQUIRE(s->size() == 2);
  std::vector<uint64_t> back = {4, 7};  // 7 was never answered: ignored
  REQUIRE(policy->Unsent(back).ok());
  REQUIRE(policy->Unsent(back).ok());  // twice: no effect
  // Page 4 is still a candidate at the next tick (it is still dirty).
  auto s2 = policy->Tick(2, peek);  // 3 reappears: rewritten
  REQUIRE(s2.ok());
  CHECK(std::vector<uint64_t>(s2->begin(), s2->end()) == std::vector<uint64_t>{3, 4});
  DirtyBitmap final_dirty(8);
  REQUIRE(policy->EndEpoch(final_dirty).ok());
  CHECK(policy->last_epoch().speculative_sends == 3);
  CHECK(policy->last_epoch().wasted_sends == 1);
  CHECK(policy->last_epoch().saved_pages == 2);
  CHECK(policy->last_epoch().baseline_pages == 2);
}

TEST_CASE("speculation: misuse is refused and changes nothing", "[spec]") {
  SpeculationOptions o;
  CHECK(SpeculationPolicy::Create(0, o).status().code() == Errc::kInvalidArgument);
  o.ticks_per_epoch = 1;
  CHECK(SpeculationPolicy::Create(8, o).status().code() == Errc::kInvalidArgument);
  o = SpeculationOptions{};
  o.budget_window = 0;
  CHECK(SpeculationPolicy::Create(8, o).status().code() == Errc::kInvalidArgument);
  o = SpeculationOptions{};
  o.budget_ratio = -1;
  CHECK(SpeculationPolicy::Create(8, o).status().code() == Errc::kInvalidArgument);

  auto policy = Make(SpeculationPolicyKind::kHistory, 8);
  DirtyBitmap peek(8), wrong(9);
  CHECK(policy->Tick(1, peek).status().code() == Errc::kFailedPrecondition);
  CHECK(policy->EndEpoch(peek).code() == Errc::kFailedPrecondition);
  REQUIRE(policy->BeginEpoch().ok());
  CHECK(policy->BeginEpoch().code() == Errc::kFailedPrecondition);
  CHECK(policy->Tick(0, peek).status().code() == Errc::kInvalidArgument);
  CHECK(policy->Tick(1, wrong).status().code() == Errc::kInvalidArgument);
  REQUIRE(policy->Tick(2, peek).ok());
  CHECK(policy->Tick(2, peek).status().code() == Errc::kInvalidArgument);
  CHECK(policy->EndEpoch(wrong).code() == Errc::kInvalidArgument);
  CHECK(policy->in_epoch());
  REQUIRE(policy->EndEpoch(peek).ok());
  CHECK_FALSE(policy->in_epoch());
  CHECK(policy->totals().epochs == 1);
}

}  // namespace
}  // namespace ftsync::internal
