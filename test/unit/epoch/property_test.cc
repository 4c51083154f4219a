// The property that matters: for random workloads and a primary that dies
// (or a stream that is damaged) at any byte of the protocol, the backup's
// replica equals the primary's memory and state as of the backup's last
// complete epoch, that epoch is at least the last one the primary saw
// ACKed, and no dirty page is lost on the primary.
//
// Each trial also draws how pages travel: whole, or as deltas of every
// mode and block size (with a shadow store sometimes small enough to evict
// all the time), uncompressed or compressed with zlib or zstd, and with or
// without speculative transfer (each policy; pages sent ahead between
// epochs and named by the next one); so the property is checked for every
// encoding at no extra run time.
//
// FTSYNC_PROPERTY_SEEDS sets the number of seeds (default 300).
#include <catch2/catch.hpp>

#include <cstdlib>

#include "epoch/harness.h"
#include "testing/workload.h"

namespace ftsync {
namespace {
using test::Harness;

struct Rng {
  uint64_t s;
  uint64_t Next() {
    s += 0x9e3779b97f4a7c15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
};

enum class Fault { kNone, kCrash, kCorrupt };

struct Trial {
  uint64_t seed;
  Fault fault;
  std::string Describe() const {
    return "seed " + std::to_string(seed) + (fault == Fault::kCrash ? " crash" : fault == Fault::kCorrupt ? " corrupt" : " clean");
  }
};

// The encoding of a trial, drawn from its seed.
void DrawEncoding(Rng& rng, CheckpointerOptions* o) {
  const DeltaMode modes[] = {DeltaMode::kOff, DeltaMode::kBlocks, DeltaMode::kRuns, DeltaMode::kAuto,
                             DeltaMode::kBlockHash};
  const uint32_t blocks[] = {64, 128, 256};
  const Compression codecs[] = {Compression::kNone, Compression::kZlib, Compression::kZstd};
  o->delta = modes[rng.Below(5)];
  o->delta_block_size = blocks[rng.Below(3)];
  o->compression = codecs[rng.Below(3)];
  o->compression_level = o->compression == Compression::kZlib ? 1 + static_cast<int>(rng.Below(9)) : 0;
  // A third of the trials: a store of 8..32 pages (8 ways), so pages are
  // evicted and resent whole all the time.
  const Speculation specs[] = {Speculation::kOff, Speculation::kEager, Speculation::kHistory,
                               Speculation::kFill};
  o->speculation = specs[rng.Below(4)];
  o->speculation_ticks = 3;
  if (rng.Below(3) == 0) {
    size_t per_page = o->delta == DeltaMode::kBlockHash ? 4096 / o->delta_block_size * 8 + 32 : 4096 + 32;
    o->shadow_budget_bytes = (8 + 8 * rng.Below(4)) * per_page + 4096;
  }
}

void RunTrial(const Trial& t) {
  Rng rng{t.seed};
  uint64_t frames = 16 + rng.Below(200);
  auto kinds = testing::AllWorkloadKinds();
  testing::WorkloadKind kind = kinds[rng.Below(kinds.size())];
  int epochs = 2 + static_cast<int>(rng.Below(14));
  testing::WorkloadParams wp;
  wp.writes_per_step = 1 + rng.Below(48);
  testing::Workload work(kind, t.seed, wp);

  Harness h(frames, t.seed);
  CheckpointerOptions opts;
  opts.max_in_flight = 1 + static_cast<uint32_t>(rng.Below(3));
  opts.batch_pages = 1 + static_cast<uint32_t>(rng.Below(64));
  opts.precopy_rounds = static_cast<uint32_t>(rng.Below(3));
  DrawEncoding(rng, &opts);
  // A third of the trials: a peek-only domain (Xen's log-dirty), whose
  // pages sent ahead stay dirty and are resent only when changed.
  const bool peek_only = rng.Below(3) == 0;
  if (peek_only) h.dom.SetSpeculationSupport(true, false);
  // A rough size of the whole session, to place the fault anywhere in it
  // (deltas of the workloads' small writes are much smaller than pages).
  uint64_t per_write = opts.delta == DeltaMode::kOff ? 4120 : 600;
  uint64_t span = 48 + frames * 4200 + static_cast<uint64_t>(epochs) * (wp.writes_per_step * per_write + 600);
  std::unique_ptr<ByteSink> faulty;
  test::CrashingSink* crash = nullptr;
  if (t.fault == Fault::kCrash) {
    auto c = std::make_unique<test::CrashingSink>(&h.fwd.sink(), rng.Below(span));
    crash = c.get();
    faulty = std::move(c);
  } else if (t.fault == Fault::kCorrupt) {
    opts.max_in_flight = 1000;  // never wait for an ACK that cannot come
    faulty = std::make_unique<test::CorruptingSink>(&h.fwd.sink(), rng.Below(span),
                                                    static_cast<uint8_t>(1u << rng.Below(8)));
  }
  ByteSink* out = faulty ? faulty.get() : &h.fwd.sink();
  test::PauseCheckingSink pause_check(out, &h.dom);

  h.StartReceiver();
  Checkpointer cp(&h.dom, &pause_check, &h.back.source(), opts);
  REQUIRE(cp.AddDevice(&h.snap).ok());
  Status s = cp.Start();
  for (int e = 1; s.ok() && e <= epochs; ++e) {
    REQUIRE(work.Step(&h.dom).ok());
    if (opts.speculation != Speculation::kOff) {
      // Two ticks: pages sent ahead, some written again before the epoch ends.
      s = cp.Speculate();
      if (s.ok()) REQUIRE(work.Step(&h.dom).ok());
      if (s.ok()) s = cp.Speculate();
      if (!s.ok()) break;
    }
    s = cp.Checkpoint();
  }
  if (s.ok() && t.fault != Fault::kCorrupt) s = cp.Finish();
  (void)h.fwd.sink().Close();  // the primary is gone (or done)
  h.Join();
  // Let the primary see whatever the backup said last.
  while (cp.status().ok() && cp.PollBackChannel(0).ok()) {
    auto more = h.back.source().WaitReadable(0);
    if (!more.ok() || !*more) break;
  }

  INFO(t.Describe() << " frames " << frames << " workload " << testing::WorkloadName(kind)
                    << " epochs " << epochs << " delta " << DeltaModeName(opts.delta) << "/"
                    << opts.delta_block_size << " budget " << opts.shadow_budget_bytes << " codec "
                    << CompressionName(opts.compression) << " speculation "
                    << SpeculationName(opts.speculation) << (peek_only ? " (peek-only)" : "")
                    << " primary: " << s.ToString()
                    << " backup: " << h.rx_status.ToString());
  CHECK(pause_check.writes_while_paused == 0);
  CHECK(h.snap.violations.empty());
  if (t.fault == Fault::kNone) {
    REQUIRE(s.ok());
    REQUIRE(h.rx_status.ok());
  }
  if (t.fault == Fault::kCrash && crash->crashed) CHECK((h.rx_status.IsFailover() || h.rx_status.IsCorruption()));
  if (t.fault == Fault::kCorrupt) CHECK(!h.rx_status.ok());

  int64_t acked = cp.last_acked_epoch();
  auto done = h.rx->last_complete_epoch();
  if (acked >= 0) {
    REQUIRE(done.has_value());
    CHECK(static_cast<int64_t>(*done) >= acked);
  }
  if (done) {
    std::string why;
    CHECK(h.ReplicaEquals(*done, &why));
    INFO(why);
  }
  // No dirty page lost: every frame that differs from the last ACKed epoch
  // is still in the domain's dirty log, ready for the next session.
  if (acked >= 0 && !cp.status().ok()) {
    const auto& base = h.snap.memory.at(static_cast<uint64_t>(acked));
    const DirtyBitmap& pending = h.dom.pending_dirty();
    for (uint64_t p = 0; p < frames; ++p) {
      if (std::memcmp(base.data() + p * 4096, h.dom.memory().data() + p * 4096, 4096) != 0) {
        INFO("frame " << p);
        CHECK(pending.Test(p));
      }
    }
  }
}

int Seeds() {
  const char* e = std::getenv("FTSYNC_PROPERTY_SEEDS");
  return e ? std::atoi(e) : 300;
}

TEST_CASE("property: clean sessions replicate exactly", "[property]") {
  for (int seed = 1; seed <= Seeds() / 3; ++seed) RunTrial({static_cast<uint64_t>(seed), Fault::kNone});
}

TEST_CASE("property: a primary crash at any byte leaves the last complete epoch exact",
          "[property]") {
  for (int seed = 1; seed <= Seeds(); ++seed) RunTrial({static_cast<uint64_t>(seed) * 7919, Fault::kCrash});
}

TEST_CASE("property: a damaged byte anywhere is rejected and the replica keeps its epoch",
          "[property]") {
  for (int seed = 1; seed <= Seeds() / 2; ++seed)
    RunTrial({static_cast<uint64_t>(seed) * 104729, Fault::kCorrupt});
}

}  // namespace
}  // namespace ftsync
