// The primary's engine: phases, pause boundaries, in-flight bound, failure
// rules (dirty bits put back, sticky stream failures), pre-copy, stats.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>

#include "epoch/harness.h"
#include "testing/workload.h"

namespace ftsync {
namespace {
using test::Harness;
using Method = testing::ErrorInjectingDomain::Method;

void DirtySome(testing::FakeDomain* d, std::initializer_list<uint64_t> pfns, uint8_t v) {
  for (uint64_t p : pfns) d->Fill(p, v);
}

bool AddDeviceAfterStartFails(Checkpointer& cp) {
  test::SnapshotDevice late(nullptr);
  return cp.AddDevice(&late).code() == Errc::kFailedPrecondition;
}

TEST_CASE("checkpointer: devices see libxl's phases, commits only after ACK", "[epoch]") {
  Harness h(32);
  h.StartReceiver();
  CheckpointerOptions o;
  o.max_in_flight = 1;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.AddDevice(&h.snap).ok());
  REQUIRE(cp.Start().ok());
  CHECK(h.snap.setups == 1);
  DirtySome(&h.dom, {1, 2}, 0xaa);
  REQUIRE(cp.Checkpoint().ok());
  DirtySome(&h.dom, {3}, 0xbb);
  REQUIRE(cp.Checkpoint().ok());
  REQUIRE(cp.Finish().ok());
  h.Join();
  REQUIRE(h.rx_status.ok());
  CHECK(h.snap.violations.empty());
  CHECK(h.snap.commits == std::vector<uint64_t>{0, 1, 2});
  CHECK(h.snap.teardowns == 1);
  // post/pre of an epoch bracket its pause; commit n follows ACK n, which
  // with one epoch in flight comes before the next epoch's postsuspend.
  CHECK(h.snap.phases == std::vector<std::string>{"post0", "pre0", "commit0", "post1", "pre1",
                                                  "commit1", "post2", "pre2", "commit2"});
  std::string why;
  CHECK(h.ReplicaEquals(2, &why));
  INFO(why);
  CHECK(AddDeviceAfterStartFails(cp));
}

TEST_CASE("checkpointer: the stream is written only while the guest runs", "[epoch]") {
  Harness h(64);
  h.StartReceiver();
  test::PauseCheckingSink sink(&h.fwd.sink(), &h.dom);
  Checkpointer cp(&h.dom, &sink, &h.back.source());
  REQUIRE(cp.Start().ok());
  testing::Workload w(testing::WorkloadKind::kSparseRandom, 5);
  for (int i = 0; i < 10; ++i) {
    REQUIRE(w.Step(&h.dom).ok());
    REQUIRE(cp.Checkpoint().ok());
  }
  REQUIRE(cp.Finish().ok());
  CHECK(sink.writes_while_paused == 0);
  CHECK(h.dom.counters().suspended_writes == 0);
}

TEST_CASE("checkpointer: at most max_in_flight epochs go unacknowledged; it waits, never drops",
          "[epoch]") {
  Harness h(16, 1, /*gate_acks=*/true);
  h.StartReceiver();
  h.gate->Allow(1);  // the back-channel header
  CheckpointerOptions o;
  o.max_in_flight = 2;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.Start().ok());        // epoch 0 in flight
  h.dom.Fill(1, 1);
  REQUIRE(cp.Checkpoint().ok());   // epoch 1 in flight
  std::atomic<bool> third_done{false};
  std::thread third([&] {
    h.dom.Fill(2, 2);
    REQUIRE(cp.Checkpoint().ok());
    third_done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK_FALSE(third_done.load());   // blocked: two epochs unacknowledged
  CHECK(cp.stats().epochs_sent == 2);
  h.gate->Allow(1);                 // ACK(0) may pass
  third.join();
  CHECK(third_done.load());
  CHECK(cp.stats().epochs_sent == 3);
  CHECK(cp.last_acked_epoch() == 0);
  h.gate->Open();
  REQUIRE(cp.Finish().ok());
  h.Join();
  CHECK(h.rx->last_complete_epoch() == std::optional<uint64_t>(2));
}

// Fails every write from the n-th on (a dead peer, a full socket buffer).
class FailingSink : public ByteSink {
 public:
  FailingSink(ByteSink* inner, int fail_from) : inner_(inner), fail_from_(fail_from) {}
  Status Write(std::span<const ConstBuffer> b) override {
    if (++writes_ >= fail_from_) return Status(Errc::kPeerGone, "connection reset (test)");
    return inner_->Write(b);
  }
  Status Close() override { return inner_->Close(); }
  int writes_ = 0;

 private:
  ByteSink* inner_;
  int fail_from_;
};

TEST_CASE("checkpointer: a failed send puts every unacknowledged dirty frame back", "[epoch]") {
  testing::FakeDomain dom(64);
  MemoryPipe fwd, back;
  test::TempDir dir;
  auto rep = ReplicaImage::Open(dir.Sub("r"));
  Receiver rx(rep->get(), &fwd.source(), &back.sink());
  std::thread t([&] {
    if (rx.Handshake().ok()) (void)rx.Run();
  });
  FailingSink sink(&fwd.sink(), 1 << 30);
  CheckpointerOptions o;
  o.max_in_flight = 4;
  Checkpointer cp(&dom, &sink, &back.source(), o);
  REQUIRE(cp.Start().ok());
  REQUIRE(cp.WaitForAck(0).ok());
  DirtySome(&dom, {3, 4, 5}, 9);
  REQUIRE(cp.Checkpoint().ok());  // epoch 1: sent, maybe not yet ACKed
  DirtySome(&dom, {10, 11}, 7);
  // Epoch 2 fails half-way through its records.
  sink = FailingSink(&fwd.sink(), 0);
  Status s = cp.Checkpoint();
  CHECK(s.code() == Errc::kPeerGone);
  CHECK(cp.status().code() == Errc::kPeerGone);  // sticky
  CHECK(cp.Checkpoint().code() == Errc::kPeerGone);
  const DirtyBitmap& pending = dom.pending_dirty();
  CHECK(pending.Test(10));
  CHECK(pending.Test(11));
  if (cp.last_acked_epoch() < 1) {  // epoch 1 unacknowledged: its frames too
    CHECK(pending.Test(3));
    CHECK(pending.Test(5));
  }
  CHECK(cp.stats().redirtied_pages >= 2);
  (void)fwd.sink().Close();
  t.join();
}

TEST_CASE("checkpointer: a failing domain call puts bits back, resumes, and can retry",
          "[epoch]") {
  for (Method m : {Method::kFetchAndClearDirty, Method::kReadFrames, Method::kSaveState}) {
    Harness h(32);
    h.StartReceiver();
    Checkpointer cp(&h.faulty, &h.fwd.sink(), &h.back.source());
    REQUIRE(cp.AddDevice(&h.snap).ok());
    REQUIRE(cp.Start().ok());
    DirtySome(&h.dom, {4, 5, 6}, 0x44);
    h.faulty.FailNth(m, h.faulty.calls(m) + 1, Status(Errc::kIoError, "injected"));
    Status s = cp.Checkpoint();
    INFO(testing::ErrorInjectingDomain::MethodName(m) << ": " << s.ToString());
    CHECK(s.code() == Errc::kIoError);
    CHECK_FALSE(h.dom.suspended());       // the guest runs again
    CHECK(cp.status().ok());              // not sticky: nothing was sent
    CHECK(cp.next_epoch() == 1);          // the epoch number was not used
    if (m != Method::kFetchAndClearDirty) CHECK(h.dom.pending_dirty().Test(5));
    REQUIRE(cp.Checkpoint().ok());        // the retry carries frames 4-6
    REQUIRE(cp.Finish().ok());
    h.Join();
    std::string why;
    CHECK(h.ReplicaEquals(1, &why));
    INFO(why);
    std::vector<uint8_t> page(4096);
    auto rep = ReplicaImage::Open(h.dir.Sub("replica"));
    REQUIRE((*rep)->ReadFrame(5, page.data()).ok());
    CHECK(page == std::vector<uint8_t>(4096, 0x44));
  }
}

TEST_CASE("checkpointer: suspend failure is retryable, resume failure ends the session", "[epoch]") {
  Harness h(16);
  h.StartReceiver();
  Checkpointer cp(&h.faulty, &h.fwd.sink(), &h.back.source());
  REQUIRE(cp.Start().ok());
  h.faulty.FailNth(Method::kSuspend, h.faulty.calls(Method::kSuspend) + 1, Status(Errc::kBusy, "busy"));
  CHECK(cp.Checkpoint().IsRetryable());
  REQUIRE(cp.Checkpoint().ok());
  h.faulty.FailNth(Method::kResume, h.faulty.calls(Method::kResume) + 1, Status(Errc::kIoError, "stuck"));
  DirtySome(&h.dom, {7}, 1);
  CHECK(cp.Checkpoint().code() == Errc::kIoError);
  CHECK(cp.status().code() == Errc::kIoError);
  CHECK(h.dom.pending_dirty().Test(7));
  (void)h.fwd.sink().Close();
}

TEST_CASE("checkpointer: a device failing in setup tears every device down", "[epoch]") {
  struct Failing : test::SnapshotDevice {
    using SnapshotDevice::SnapshotDevice;
    std::string Name() const override { return "netbuf"; }
    Status Setup() override { return Status(Errc::kNotSupported, "no sch_plug"); }
  };
  Harness h(8);
  Failing bad(&h.dom);
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source());
  REQUIRE(cp.AddDevice(&h.snap).ok());
  REQUIRE(cp.AddDevice(&bad).ok());
  Status s = cp.Start();
  CHECK(s.code() == Errc::kNotSupported);
  CHECK(s.context().find("device netbuf setup") != std::string::npos);
  CHECK(h.snap.teardowns == 1);
  CHECK(bad.teardowns == 1);
  CHECK_FALSE(h.dom.dirty_log_enabled());
}

// A domain whose guest keeps writing while it runs: every ReadFrames made
// while running dirties a few frames, as a live guest would.
class LiveGuest : public Domain {
 public:
  explicit LiveGuest(testing::FakeDomain* d) : d_(d) {}
  std::string Name() const override { return d_->Name(); }
  size_t PageSize() const override { return d_->PageSize(); }
  uint64_t FrameCount() const override { return d_->FrameCount(); }
  Status EnableDirtyLog() override { return d_->EnableDirtyLog(); }
  Status DisableDirtyLog() override { return d_->DisableDirtyLog(); }
  Status FetchAndClearDirty(DirtyBitmap* o) override { return d_->FetchAndClearDirty(o); }
  Status Redirty(std::span<const uint64_t> p) override { return d_->Redirty(p); }
  Status Suspend() override { return d_->Suspend(); }
  Status Resume() override { return d_->Resume(); }
  Status ReadFrames(std::span<const uint64_t> p, uint8_t* dst, std::span<int> e) override {
    Status s = d_->ReadFrames(p, dst, e);
    if (!d_->suspended())
      for (int i = 0; i < 40; ++i) d_->Fill((n_ * 7 + static_cast<uint64_t>(i) * 13) % d_->FrameCount(), static_cast<uint8_t>(n_ + i));
    ++n_;
    return s;
  }
  Result<std::vector<uint8_t>> SaveState() override { return d_->SaveState(); }
  Status RestoreState(std::span<const uint8_t> s) override { return d_->RestoreState(s); }

 private:
  testing::FakeDomain* d_;
  uint64_t n_ = 0;
};

TEST_CASE("checkpointer: epoch 0 pre-copies while the guest runs and stays exact", "[epoch]") {
  Harness h(1024);
  h.StartReceiver();
  LiveGuest live(&h.dom);
  CheckpointerOptions o;
  o.batch_pages = 64;
  o.precopy_rounds = 4;
  o.precopy_min_pages = 8;
  Checkpointer cp(&live, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.AddDevice(&h.snap).ok());
  REQUIRE(cp.Start().ok());
  CHECK(cp.stats().precopy_rounds >= 1);
  REQUIRE(cp.Finish().ok());
  h.Join();
  REQUIRE(h.rx_status.ok());
  std::string why;
  CHECK(h.ReplicaEquals(0, &why));
  INFO(why);
}

TEST_CASE("checkpointer: per-epoch stats add up", "[epoch]") {
  Harness h(256);
  h.StartReceiver();
  CheckpointerOptions wholepages;
  wholepages.delta = DeltaMode::kOff;
  wholepages.compression = Compression::kNone;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), wholepages);
  REQUIRE(cp.Start().ok());
  for (uint64_t p = 0; p < 40; ++p) h.dom.Fill(p * 3, 5);
  REQUIRE(cp.Checkpoint().ok());
  REQUIRE(cp.Finish().ok());
  auto hist = cp.stats_history();
  REQUIRE(hist.size() == 2);
  const EpochStats& e = hist[1];
  CHECK(e.epoch == 1);
  CHECK(e.dirty_pages == 40);
  CHECK(e.bytes_staged == 40 * 4096);
  CHECK(e.bytes_wire > e.bytes_staged + e.state_bytes);
  CHECK(e.bytes_wire < e.bytes_staged + e.state_bytes + 4096);
  CHECK(e.harvest_us + e.copy_us + e.state_save_us <= e.paused_us);
  CHECK(e.ack_latency_us >= 0);  // Finish waited for the ACK
  CHECK(hist[0].dirty_pages + 256 >= 256);
  CheckpointerStats s = cp.stats();
  CHECK(s.epochs_sent == 2);
  CHECK(s.epochs_acked == 2);
  CHECK(s.in_flight == 0);
  CHECK(s.total_bytes_wire == hist[0].bytes_wire + hist[1].bytes_wire);
  h.Join();
  ReceiverStats r = h.rx->stats();
  CHECK(r.epochs_applied == 2);
  CHECK(r.pages_applied == 40);
  CHECK(r.bytes_received == s.total_bytes_wire + 48 + 16);  // + header + END
  CHECK(e.delta_pages == 0);
  CHECK(e.bytes_after_delta == e.bytes_after_compression);
  CHECK(e.bytes_after_delta == 8 + 40 * (8 + 4096) + e.state_bytes);
}

// ---- deltas and compression ----

struct EncodingCase {
  DeltaMode delta;
  uint32_t block;
  Compression codec;
};

std::vector<EncodingCase> AllEncodings() {
  std::vector<EncodingCase> v;
  for (Compression c : {Compression::kNone, Compression::kZlib, Compression::kZstd}) {
    v.push_back({DeltaMode::kOff, 64, c});
    v.push_back({DeltaMode::kRuns, 64, c});
    v.push_back({DeltaMode::kAuto, 128, c});
    for (uint32_t b : {64u, 128u, 256u}) {
      v.push_back({DeltaMode::kBlocks, b, c});
      v.push_back({DeltaMode::kBlockHash, b, c});
    }
  }
  return v;
}

TEST_CASE("checkpointer: every delta mode and codec replicates exactly and sends less", "[epoch]") {
  for (const EncodingCase& ec : AllEncodings()) {
    Harness h(128);
    h.StartReceiver();
    CheckpointerOptions o;
    o.delta = ec.delta;
    o.delta_block_size = ec.block;
    o.compression = ec.codec;
    o.compression_level = ec.codec == Compression::kZlib ? 6 : 0;
    Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
    REQUIRE(cp.AddDevice(&h.snap).ok());
    for (uint64_t p = 0; p < 40; ++p) h.dom.Fill(p * 3, static_cast<uint8_t>(p));  // compressible
    REQUIRE(cp.Start().ok());
    // Epoch 1 sends 40 pages whole (they enter the store); epochs 2 and 3
    // change a few bytes of each.
    for (uint64_t e = 1; e <= 3; ++e) {
      for (uint64_t p = 0; p < 40; ++p) {
        uint8_t b[3] = {static_cast<uint8_t>(e), static_cast<uint8_t>(p), 0x5a};
        REQUIRE(h.dom.Write(p * 3, (e * 97 + p * 13) % 4093, b).ok());
      }
      REQUIRE(cp.Checkpoint().ok());
    }
    REQUIRE(cp.Finish().ok());
    h.Join();
    INFO(DeltaModeName(ec.delta) << "/" << ec.block << "/" << CompressionName(ec.codec) << ": "
                                 << h.rx_status.ToString());
    REQUIRE(h.rx_status.ok());
    std::string why;
    CHECK(h.ReplicaEquals(3, &why));
    INFO(why);
    auto hist = cp.stats_history();
    REQUIRE(hist.size() == 4);
    const EpochStats& e3 = hist[3];
    CHECK(e3.dirty_pages == 40);
    if (ec.delta == DeltaMode::kOff) {
      CHECK(e3.delta_pages == 0);
      CHECK(e3.bytes_after_delta > 40 * 4096);
    } else {
      CHECK(hist[1].delta_pages == 0);  // first sent after epoch 0: whole
      CHECK(e3.delta_pages == 40);
      CHECK(e3.bytes_after_delta < 40 * (ec.block + 60) + e3.state_bytes + 64);
    }
    if (ec.codec == Compression::kNone)
      CHECK(e3.bytes_after_compression == e3.bytes_after_delta);
    else if (ec.delta == DeltaMode::kOff)
      CHECK(e3.bytes_after_compression < e3.bytes_after_delta / 2);
    CHECK(e3.bytes_wire < e3.bytes_after_compression + 16 * 20);
    CHECK(h.rx->stats().delta_pages_applied == (ec.delta == DeltaMode::kOff ? 0 : 80));
  }
}

TEST_CASE("checkpointer: a delta against a base the backup does not hold is refused", "[epoch]") {
  // The backup's copy of frame 5 is damaged behind the engines' backs after
  // epoch 1; the primary's next delta for it names the version it sent.
  Harness h(32);
  h.StartReceiver();
  CheckpointerOptions o;
  o.max_in_flight = 1;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.AddDevice(&h.snap).ok());
  REQUIRE(cp.Start().ok());
  uint8_t b[2] = {1, 2};
  REQUIRE(h.dom.Write(5, 100, b).ok());
  REQUIRE(cp.Checkpoint().ok());  // frame 5 whole: enters the shadow store
  REQUIRE(cp.WaitForAck(1).ok());
  {
    int fd = ::open(h.replica->memory_path().c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    uint8_t junk = 0xee;
    REQUIRE(::pwrite(fd, &junk, 1, 5 * 4096 + 7) == 1);
    ::close(fd);
  }
  b[0] = 9;
  REQUIRE(h.dom.Write(5, 100, b).ok());
  REQUIRE(h.dom.Write(6, 0, b).ok());
  Status s = cp.Checkpoint();
  if (s.ok()) s = cp.WaitForAck(2);
  INFO(s.ToString());
  CHECK(s.code() == Errc::kPeerRejected);
  CHECK(s.context().find("[D4]") != std::string::npos);
  h.Join();
  CHECK(h.rx_status.IsCorruption());
  CHECK(h.rx_status.context().find("[D4]") != std::string::npos);
  CHECK(h.rx->last_complete_epoch() == std::optional<uint64_t>(1));
  // Nothing is lost: frames 5 and 6 wait in the dirty log for a new session.
  CHECK(h.dom.pending_dirty().Test(5));
  CHECK(h.dom.pending_dirty().Test(6));
}

// The rest of epoch `e` of the speculation tests: three ticks, frame 0
// rewritten after each (hot), frames 30..39 written after the last one,
// then the checkpoint.
void RestOfSpeculativeEpoch(Harness& h, Checkpointer& cp, uint64_t e, uint8_t b[4]) {
  for (int t = 1; t < 4; ++t) {
    REQUIRE(cp.Speculate().ok());
    b[0]++;
    REQUIRE(h.dom.Write(0, 100 + t, std::span<const uint8_t>(b, 4)).ok());
  }
  for (uint64_t p = 30; p < 40; ++p) REQUIRE(h.dom.Write(p, 3 * e, std::span<const uint8_t>(b, 4)).ok());
  REQUIRE(cp.Checkpoint().ok());
}

TEST_CASE("checkpointer: speculative pages go ahead; the epoch sends only what changed since", "[epoch]") {
  for (Speculation sp : {Speculation::kEager, Speculation::kHistory, Speculation::kFill}) {
    Harness h(64);
    h.StartReceiver();
    CheckpointerOptions o;
    o.speculation = sp;
    o.speculation_ticks = 4;
    Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
    REQUIRE(cp.AddDevice(&h.snap).ok());
    REQUIRE(cp.Start().ok());
    uint8_t b[4] = {1, 2, 3, 4};
    for (uint64_t e = 1; e <= 4; ++e) {
      // Frames 0..19 are written once early in the epoch; frame 0 again
      // after every tick (hot); frames 30..39 only after the last tick.
      for (uint64_t p = 0; p < 20; ++p) REQUIRE(h.dom.Write(p, 8 * e, b).ok());
      RestOfSpeculativeEpoch(h, cp, e, b);
    }
    REQUIRE(cp.Finish().ok());
    h.Join();
    INFO(SpeculationName(sp) << ": " << h.rx_status.ToString());
    REQUIRE(h.rx_status.ok());
    std::string why;
    CHECK(h.ReplicaEquals(4, &why));
    INFO(why);
    auto hist = cp.stats_history();
    REQUIRE(hist.size() == 5);
    uint64_t ahead = 0;
    for (size_t e = 1; e < hist.size(); ++e) ahead += hist[e].speculative_pages;
    CHECK(ahead >= 19 * 3);  // frames 1..19 go ahead once the policy knows them
    const EpochStats& last = hist.back();
    CHECK(last.speculative_bytes > 19 * 4096);
    // Left for the paused end: frame 0 (hot) and 30..39, not 1..19.
    CHECK(last.dirty_pages <= 11 + (sp == Speculation::kEager ? 0 : 19));
    CHECK(h.rx->stats().speculative_pages_applied == ahead);
  }
}

TEST_CASE("checkpointer: a peek-only domain resends only what changed since the speculative copy", "[epoch]") {
  // Xen's log-dirty can peek but not re-arm single frames: every page sent
  // ahead is dirty again at the end. Frames 1..19 get fresh contents early
  // in each epoch and are then left alone; frame 0 is rewritten after every
  // tick; 30..39 are written only after the last tick.
  for (Speculation sp : {Speculation::kEager, Speculation::kHistory, Speculation::kFill}) {
    for (bool speculate : {false, true}) {
      Harness h(64);
      h.dom.SetSpeculationSupport(true, false);
      h.StartReceiver();
      CheckpointerOptions o;
      o.speculation = speculate ? sp : Speculation::kOff;
      o.speculation_ticks = 4;
      o.compression = Compression::kNone;  // count the bytes the deltas leave
      Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
      REQUIRE(cp.AddDevice(&h.snap).ok());
      REQUIRE(cp.Start().ok());
      CHECK(cp.speculating() == speculate);
      std::mt19937 rng(7);
      std::vector<uint8_t> page(4096);
      uint8_t b[4] = {1, 2, 3, 4};
      for (uint64_t e = 1; e <= 5; ++e) {
        for (uint64_t p = 1; p < 20; ++p) {
          for (auto& x : page) x = static_cast<uint8_t>(rng());
          REQUIRE(h.dom.Write(p, 0, page).ok());
        }
        RestOfSpeculativeEpoch(h, cp, e, b);
      }
      REQUIRE(cp.Finish().ok());
      h.Join();
      INFO(SpeculationName(sp) << (speculate ? " on" : " off") << ": " << h.rx_status.ToString());
      REQUIRE(h.rx_status.ok());
      std::string why;
      CHECK(h.ReplicaEquals(5, &why));
      INFO(why);
      CHECK(h.snap.violations.empty());
      CHECK(h.dom.counters().frames_rearmed == 0);
      auto hist = cp.stats_history();
      REQUIRE(hist.size() == 6);
      const EpochStats& last = hist.back();
      // Peek-only: the whole written set is still copied at the end.
      CHECK(last.dirty_pages == 30);
      uint64_t ahead = 0;
      for (size_t e = 1; e < hist.size(); ++e) ahead += hist[e].speculative_pages;
      CHECK(h.rx->stats().speculative_pages_applied == ahead);
      if (!speculate) {
        CHECK(ahead == 0);
        CHECK(last.bytes_after_delta > 19 * 4096);  // frames 1..19 whole
        continue;
      }
      CHECK(ahead >= 19 * 4);
      CHECK(last.speculative_bytes > 19 * 4096);
      // 1..19 went ahead and are not sent again; what is left is frame 0's
      // and 30..39's small deltas, and the state.
      CHECK(last.speculative_unchanged >= 19);
      CHECK(last.bytes_after_delta < 4096);
      if (sp != Speculation::kEager) {
        // The hot frame was seen rewritten after its copy and is held back.
        uint64_t late_sends = 0;
        for (size_t e = 3; e < hist.size(); ++e) late_sends += hist[e].speculative_sends;
        // (fill gambles on it at the last tick while its odds last.)
        CHECK(late_sends <= 19 * 3 + (sp == Speculation::kFill ? 3 : 1));
      }
    }
  }
}

TEST_CASE("checkpointer: peek-only speculation with a tiny page store still replicates exactly", "[epoch]") {
  // Pages sent ahead are evicted from a store of 8 pages before the epoch
  // ends: they go whole again, never as a delta against a lost copy.
  Harness h(64);
  h.dom.SetSpeculationSupport(true, false);
  h.StartReceiver();
  CheckpointerOptions o;
  o.speculation = Speculation::kEager;
  o.speculation_ticks = 3;
  o.shadow_budget_bytes = 8 * (4096 + 32) + 4096;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.AddDevice(&h.snap).ok());
  REQUIRE(cp.Start().ok());
  REQUIRE(cp.speculating());
  uint8_t b[8] = {9, 8, 7, 6, 5, 4, 3, 2};
  for (uint64_t e = 1; e <= 4; ++e) {
    for (uint64_t p = 0; p < 40; ++p) REQUIRE(h.dom.Write(p, (p * 13 + e) % 4000, b).ok());
    REQUIRE(cp.Speculate().ok());
    for (uint64_t p = 0; p < 40; p += 3) REQUIRE(h.dom.Write(p, 4000, b).ok());
    REQUIRE(cp.Speculate().ok());
    REQUIRE(cp.Checkpoint().ok());
  }
  REQUIRE(cp.Finish().ok());
  h.Join();
  INFO(h.rx_status.ToString());
  REQUIRE(h.rx_status.ok());
  std::string why;
  CHECK(h.ReplicaEquals(4, &why));
  INFO(why);
  CHECK(cp.stats_history().back().speculative_pages > 0);
}

// A sink that fails every write once `broken` is set.
class BreakableSink : public ByteSink {
 public:
  explicit BreakableSink(ByteSink* inner) : inner_(inner) {}
  Status Write(std::span<const ConstBuffer> bufs) override {
    if (broken) return Status(Errc::kPeerGone, "link down (test)");
    return inner_->Write(bufs);
  }
  Status Close() override { return inner_->Close(); }
  bool broken = false;

 private:
  ByteSink* inner_;
};

TEST_CASE("checkpointer: speculating() only when asked and the domain can peek and re-arm", "[epoch]") {
  struct Case {
    Speculation sp;
    bool peek, rearm;
    DeltaMode delta;
    bool expect;
  };
  // A peek-only domain needs page copies: it resends what was sent ahead
  // unless it is unchanged, and only a copy says so exactly.
  for (Case c : {Case{Speculation::kHistory, true, true, DeltaMode::kRuns, true},
                 Case{Speculation::kOff, true, true, DeltaMode::kRuns, false},
                 Case{Speculation::kHistory, true, true, DeltaMode::kOff, true},
                 Case{Speculation::kHistory, true, false, DeltaMode::kRuns, true},
                 Case{Speculation::kHistory, true, false, DeltaMode::kBlocks, true},
                 Case{Speculation::kHistory, true, false, DeltaMode::kOff, false},
                 Case{Speculation::kHistory, true, false, DeltaMode::kBlockHash, false},
                 Case{Speculation::kEager, false, false, DeltaMode::kRuns, false}}) {
    Harness h(16);
    h.dom.SetSpeculationSupport(c.peek, c.rearm);
    h.StartReceiver();
    CheckpointerOptions o;
    o.speculation = c.sp;
    o.delta = c.delta;
    Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
    REQUIRE(cp.Start().ok());
    INFO(SpeculationName(c.sp) << " peek=" << c.peek << " rearm=" << c.rearm << " delta "
                               << DeltaModeName(c.delta));
    CHECK(cp.speculating() == c.expect);
    REQUIRE(cp.Finish().ok());
    h.Join();
  }
}

TEST_CASE("checkpointer: speculative pages of a failed epoch are not lost", "[epoch]") {
  // The link fails after pages were sent ahead (their dirty bits were
  // cleared by the re-arm): they must be back in the dirty log.
  Harness h(32);
  h.StartReceiver();
  CheckpointerOptions o;
  o.speculation = Speculation::kEager;
  o.speculation_ticks = 3;
  BreakableSink link(&h.fwd.sink());
  Checkpointer cp(&h.dom, &link, &h.back.source(), o);
  REQUIRE(cp.Start().ok());
  uint8_t b[1] = {7};
  for (uint64_t p = 0; p < 10; ++p) REQUIRE(h.dom.Write(p, 0, b).ok());
  REQUIRE(cp.Speculate().ok());
  CHECK(!h.dom.pending_dirty().Test(3));  // sent ahead: re-armed
  link.broken = true;
  CHECK(!cp.Checkpoint().ok());
  for (uint64_t p = 0; p < 10; ++p) {
    INFO("frame " << p);
    CHECK(h.dom.pending_dirty().Test(p));
  }
  (void)h.fwd.sink().Close();
}

TEST_CASE("checkpointer: a peek-only domain keeps what it sent ahead dirty, also when the link fails", "[epoch]") {
  Harness h(32);
  h.dom.SetSpeculationSupport(true, false);
  h.StartReceiver();
  CheckpointerOptions o;
  o.speculation = Speculation::kEager;
  o.speculation_ticks = 3;
  BreakableSink link(&h.fwd.sink());
  Checkpointer cp(&h.dom, &link, &h.back.source(), o);
  REQUIRE(cp.Start().ok());
  uint8_t b[1] = {7};
  for (uint64_t p = 0; p < 10; ++p) REQUIRE(h.dom.Write(p, 0, b).ok());
  REQUIRE(cp.Speculate().ok());
  CHECK(h.dom.counters().frames_rearmed == 0);
  CHECK(h.dom.pending_dirty().Test(3));  // sent ahead, still dirty
  link.broken = true;
  CHECK(!cp.Checkpoint().ok());
  for (uint64_t p = 0; p < 10; ++p) {
    INFO("frame " << p);
    CHECK(h.dom.pending_dirty().Test(p));
  }
  (void)h.fwd.sink().Close();
}

TEST_CASE("checkpointer: bad delta or compression options fail Start", "[epoch]") {
  auto start = [](CheckpointerOptions o) {
    Harness h(16);
    h.StartReceiver();
    Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
    Status s = cp.Start();
    (void)h.fwd.sink().Close();
    return s;
  };
  CheckpointerOptions o;
  o.delta_block_size = 100;
  CHECK(start(o).code() == Errc::kInvalidArgument);
  o = {};
  o.compression = Compression::kZlib;
  o.compression_level = 10;
  CHECK(start(o).code() == Errc::kInvalidArgument);
  o = {};
  o.shadow_budget_bytes = 1000;
  CHECK(start(o).code() == Errc::kInvalidArgument);
  o = {};
  o.delta = DeltaMode::kOff;
  o.shadow_budget_bytes = 1000;  // unused without deltas
  CHECK(start(o).ok());
}

TEST_CASE("checkpointer: unreadable frames are sent as zeros and counted", "[epoch]") {
  Harness h(16);
  h.StartReceiver();
  h.dom.SetUnreadable(3, true);
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source());
  REQUIRE(cp.Start().ok());
  CHECK(cp.stats().last.unreadable_pages == 1);
  REQUIRE(cp.Finish().ok());
  h.Join();
  auto rep = ReplicaImage::Open(h.dir.Sub("replica"));
  std::vector<uint8_t> page(4096, 1);
  REQUIRE((*rep)->ReadFrame(3, page.data()).ok());
  CHECK(page == std::vector<uint8_t>(4096, 0));
}

}  // namespace
}  // namespace ftsync

namespace ftsync {
namespace {

TEST_CASE("checkpointer: the emit-while-paused baseline writes inside the pause, still exact",
          "[epoch]") {
  test::Harness h(128);
  h.StartReceiver();
  test::PauseCheckingSink sink(&h.fwd.sink(), &h.dom);
  CheckpointerOptions o;
  o.emit_while_paused = true;
  Checkpointer cp(&h.dom, &sink, &h.back.source(), o);
  REQUIRE(cp.AddDevice(&h.snap).ok());
  REQUIRE(cp.Start().ok());
  int before = sink.writes_while_paused;
  testing::Workload w(testing::WorkloadKind::kSparseRandom, 3);
  for (int i = 0; i < 5; ++i) {
    REQUIRE(w.Step(&h.dom).ok());
    REQUIRE(cp.Checkpoint().ok());
  }
  CHECK(sink.writes_while_paused > before);  // the network moved into the pause
  auto last = cp.stats().last;
  CHECK(last.emit_paused_us == last.emit_us);
  CHECK(last.suspend_us + last.harvest_us + last.copy_us + last.state_save_us + last.emit_paused_us +
            last.resume_us <=
        last.paused_us);
  REQUIRE(cp.Finish().ok());
  h.Join();
  std::string why;
  CHECK(h.ReplicaEquals(5, &why));
  INFO(why);
}

}  // namespace
}  // namespace ftsync
