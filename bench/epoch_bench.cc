// Section 3: per-epoch paused time of the real engines.
//
// A Checkpointer on a FakeDomain streams over a MemoryPipe to a Receiver
// on its own thread, which applies each epoch to a replica directory (on
// /dev/shm when it exists, so the disk does not enter the figures). Each
// measured epoch dirties exactly N distinct random frames with
// FakeDomain::Fill, then calls Checkpoint() and waits for the epoch's ACK
// before dirtying the next, so each epoch's figures are its own (the
// Receiver is idle during the next pause). The figures come from the
// Checkpointer's EpochStats.
//
// The "ideal" pause is memcpy of N pages (N * 4 KiB contiguous) measured in
// the same run: the least a pause that copies the dirty pages locally can
// cost. The paused fraction paused / (paused + emit) shows that encoding
// and sending happen after the guest resumed.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "benchmarks.h"
#include "ftsync/checkpointer.h"
#include "ftsync/io.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "testing/fake_domain.h"
#include "testing/host_resources.h"
#include "timing.h"

namespace ftsync::bench {
namespace {


// The backup side: a Receiver on its own thread.
class Backup {
 public:
  Backup(ReplicaImage* replica, MemoryPipe* fwd, MemoryPipe* back)
      : fwd_(fwd), back_(back), rx_(replica, &fwd->source(), &back->sink()) {
    thread_ = std::thread([this] {
      status_ = rx_.Handshake();
      if (status_.ok()) status_ = rx_.Run();
      (void)back_->sink().Close();
    });
  }
  // Ends the forward stream first, so a Receiver still waiting for records
  // (the primary failed midway) sees end of stream and returns.
  ~Backup() {
    (void)fwd_->sink().Close();
    Join();
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  const Receiver& rx() const { return rx_; }
  // Valid after Join().
  const Status& status() const { return status_; }

 private:
  MemoryPipe* fwd_;
  MemoryPipe* back_;
  Receiver rx_;
  Status status_;
  std::thread thread_;
};

double Ms(uint64_t us) { return static_cast<double>(us) / 1e3; }

// Median of one EpochStats field over `v`, in milliseconds.
template <typename F>
double MedianMs(const std::vector<EpochStats>& v, F field) {
  std::vector<double> x;
  for (const EpochStats& e : v) x.push_back(Ms(field(e)));
  return Median(x);
}

struct CountResult {
  uint64_t pages = 0;
  double ideal_ms = 0;
  std::vector<EpochStats> epochs;  // measured epochs
  EpochStats first;                // the first epoch at this count (not in `epochs`)
  std::vector<double> apply_ms;    // Receiver's last_apply_us per measured epoch
};

}  // namespace

Json RunEpochBench(const BenchConfig& config) {
  PrintSection("3. Epochs: Checkpointer -> MemoryPipe -> Receiver on a FakeDomain");
  const uint64_t frames = config.quick ? 16384 : 131072;
  const std::vector<uint64_t> counts =
      config.quick ? std::vector<uint64_t>{1000, 10000} : std::vector<uint64_t>{1000, 10000, 100000};
  Json out = Json::Object();
  out.Set("domain_frames", frames).Set("epochs_per_count", config.epochs);

  testing::ScratchDir scratch("ftsync-bench");
  if (scratch.path().empty()) {
    PrintNote("skipped: cannot create a scratch directory under /dev/shm or /tmp");
    out.Set("skipped", true).Set("reason", "no scratch directory");
    return out;
  }
  testing::FakeDomain domain(frames, kPageSize, "bench-epoch", config.seed);
  Result<std::unique_ptr<ReplicaImage>> replica = ReplicaImage::Open(scratch.path() + "/replica");
  if (!replica.ok()) {
    PrintNote("skipped: " + replica.status().ToString());
    out.Set("skipped", true).Set("reason", replica.status().ToString());
    return out;
  }
  MemoryPipe fwd, back;
  Backup backup(replica->get(), &fwd, &back);
  Checkpointer cp(&domain, &fwd.sink(), &back.source());
  PrintNote("FakeDomain of " + std::to_string(frames) + " frames (" +
            std::to_string(frames * kPageSize >> 20) + " MiB), replica in " + scratch.path() +
            "; " + std::to_string(config.epochs) + " measured epochs per count after one warm-up");

  Status s;
  double start_return_s = 0;
  double start_s = TimeOnce([&] {
    uint64_t t0 = NowNs();
    s = cp.Start();
    start_return_s = static_cast<double>(NowNs() - t0) * 1e-9;
    if (s.ok()) s = cp.WaitForAck(0);
  });
  if (!s.ok()) {
    PrintNote("failed: Start: " + s.ToString());
    out.Set("error", "Start: " + s.ToString());
    return out;
  }
  PrintNote("epoch 0 (full synchronisation, " + std::to_string(frames * kPageSize >> 20) +
            " MiB): Start() returned after " + Fixed(start_return_s * 1e3, 0) + " ms, ACK after " +
            Fixed(start_s * 1e3, 0) + " ms = " + Fixed(GBps(frames * kPageSize, start_s), 2) + " GB/s");
  out.Set("epoch0_ms_start_returned", Round(start_return_s * 1e3, 1))
      .Set("epoch0_ms_until_ack", Round(start_s * 1e3, 1))
      .Set("epoch0_gbps", Round(GBps(frames * kPageSize, start_s), 3));

  Rng rng(config.seed);
  std::vector<uint64_t> scratch_pfns;
  std::vector<CountResult> results;
  uint8_t fill = 1;
  for (uint64_t n : counts) {
    CountResult r;
    r.pages = n;
    {
      PageBuffer dst(n * kPageSize);
      r.ideal_ms = MemcpySeconds(dst.data(), domain.memory().data(), n * kPageSize, config.reps) * 1e3;
    }
    for (int e = 0; e <= config.epochs && s.ok(); ++e) {
      for (uint64_t pfn : DistinctRandom(&rng, n, frames, &scratch_pfns)) domain.Fill(pfn, fill);
      ++fill;
      s = cp.Checkpoint();
      if (s.ok()) s = cp.WaitForAck(cp.next_epoch() - 1);
      if (!s.ok()) break;
      EpochStats es = cp.stats().last;
      if (es.dirty_pages != n) {
        s = Status(Errc::kInternal, "epoch " + std::to_string(es.epoch) + " carried " +
                                        std::to_string(es.dirty_pages) + " pages, expected " +
                                        std::to_string(n));
        break;
      }
      if (e == 0) {
        r.first = es;
      } else {
        r.apply_ms.push_back(Ms(backup.rx().stats().last_apply_us));
      }
    }
    if (!s.ok()) break;
    // ack_latency_us is filled in when the ACK arrives: read the history.
    std::vector<EpochStats> hist = cp.stats_history();
    r.epochs.assign(hist.end() - config.epochs, hist.end());
    results.push_back(std::move(r));
  }
  if (s.ok()) s = cp.Finish();
  backup.Join();
  if (s.ok() && !backup.status().ok()) s = backup.status().Annotate("receiver");
  if (s.ok()) {
    auto done = backup.rx().last_complete_epoch();
    if (!done || *done + 1 != cp.next_epoch())
      s = Status(Errc::kInternal, "replica is not at the last epoch");
  }

  Table pause({"dirty pages", "paused ms", "harvest", "copy", "state", "other",
               "ideal (memcpy) ms", "paused/ideal", "1st epoch paused ms"});
  Table after({"dirty pages", "paused ms", "emit ms", "paused fraction", "wire MB",
               "wire bytes/page", "rx apply ms", "ACK latency ms"});
  Json cases = Json::Array();
  for (const CountResult& r : results) {
    auto paused = [](const EpochStats& e) { return e.paused_us; };
    double paused_ms = MedianMs(r.epochs, paused);
    double harvest_ms = MedianMs(r.epochs, [](const EpochStats& e) { return e.harvest_us; });
    double copy_ms = MedianMs(r.epochs, [](const EpochStats& e) { return e.copy_us; });
    double state_ms = MedianMs(r.epochs, [](const EpochStats& e) { return e.state_save_us; });
    double other_ms = MedianMs(r.epochs, [](const EpochStats& e) {
      return e.paused_us - e.harvest_us - e.copy_us - e.state_save_us;
    });
    double emit_ms = MedianMs(r.epochs, [](const EpochStats& e) { return e.emit_us; });
    double ack_ms = MedianMs(r.epochs, [](const EpochStats& e) {
      return static_cast<uint64_t>(std::max<int64_t>(0, e.ack_latency_us));
    });
    std::vector<double> fraction;
    for (const EpochStats& e : r.epochs)
      fraction.push_back(static_cast<double>(e.paused_us) /
                         static_cast<double>(std::max<uint64_t>(1, e.paused_us + e.emit_us)));
    double wire = static_cast<double>(r.epochs.back().bytes_wire);
    double ratio = paused_ms / r.ideal_ms;
    pause.AddRow({std::to_string(r.pages), Fixed(paused_ms, 3), Fixed(harvest_ms, 3), Fixed(copy_ms, 3),
                  Fixed(state_ms, 3), Fixed(other_ms, 3), Fixed(r.ideal_ms, 3), Ratio(ratio),
                  Fixed(Ms(r.first.paused_us), 3)});
    after.AddRow({std::to_string(r.pages), Fixed(paused_ms, 3), Fixed(emit_ms, 2),
                  Fixed(Median(fraction), 3), Fixed(wire / 1e6, 2),
                  Fixed(wire / static_cast<double>(r.pages), 1), Fixed(Median(r.apply_ms), 2),
                  Fixed(ack_ms, 2)});
    Json c = Json::Object();
    Json per_epoch = Json::Array();
    for (const EpochStats& e : r.epochs) per_epoch.Push(e.paused_us);
    c.Set("dirty_pages", r.pages)
        .Set("paused_ms", Round(paused_ms, 3))
        .Set("harvest_ms", Round(harvest_ms, 3))
        .Set("copy_ms", Round(copy_ms, 3))
        .Set("state_save_ms", Round(state_ms, 3))
        .Set("other_paused_ms", Round(other_ms, 3))
        .Set("emit_ms", Round(emit_ms, 3))
        .Set("ideal_memcpy_ms", Round(r.ideal_ms, 3))
        .Set("ratio_paused_vs_ideal", Round(ratio, 4))
        .Set("paused_fraction", Round(Median(fraction), 4))
        .Set("bytes_wire", r.epochs.back().bytes_wire)
        .Set("wire_bytes_per_page", Round(wire / static_cast<double>(r.pages), 2))
        .Set("receiver_apply_ms", Round(Median(r.apply_ms), 3))
        .Set("ack_latency_ms", Round(ack_ms, 3))
        .Set("first_epoch_paused_ms", Round(Ms(r.first.paused_us), 3))
        .Set("first_epoch_copy_ms", Round(Ms(r.first.copy_us), 3))
        .Set("paused_us_per_epoch", std::move(per_epoch));
    cases.Push(std::move(c));
  }
  PrintNote("inside the pause (medians):");
  pause.Print();
  PrintNote("after the pause (guest running):");
  after.Print();
  PrintNote("paused/ideal 1.0 = the pause costs no more than copying the dirty pages once;");
  PrintNote("paused fraction = paused / (paused + emit): the share of the epoch's work done with");
  PrintNote("the guest stopped. '1st epoch' is the warm-up epoch at each count (not in the medians).");
  if (!s.ok()) PrintNote("ERROR: " + s.ToString());

  out.Set("ok", s.ok());
  if (!s.ok()) out.Set("error", s.ToString());
  out.Set("cases", std::move(cases));
  return out;
}

}  // namespace ftsync::bench
