// ftsync: the Xen comparison benchmark's in-dom0 tool (see bench/xen/README.md).
//
//   xen_bench ftsync DOMID pause|coop EPOCHS INTERVAL_MS DIR
//       replicates DOMID with XenDomain (XenSuspend::kPause or kCooperative)
//       + Checkpointer + Receiver over MemoryPipes into DIR, while a sampler
//       thread polls the domain's state every ~1 ms; prints one line
//       "XENBENCH {json}" with the engine's pause and the sampled stops.
//   xen_bench sample DOMID SECONDS [COUNT_LOG]
//       only the sampler (for `xl remus`); prints "XENBENCH {json}" with the
//       stops (intervals in which the domain was paused or shut down) and,
//       given the log of `xen_bench count` on the stream, the bytes per
//       checkpoint: bytes sent from the start of the 2nd stop to the start
//       of the last, over the stops in between (the 1st stop ends the
//       initial live migration).
//   xen_bench count LOG
//       copies stdin to stdout and appends "MONOTONIC_MS TOTAL_BYTES" to LOG
//       every 50 ms and at EOF (the bytes of a stream, over time).
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ftsync/checkpointer.h"
#include "ftsync/io.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "ftsync/xen.h"

using namespace ftsync;

namespace {

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / v.size();
}

// Polls the domain; a stop is an interval in which it could not run.
struct Sampler {
  explicit Sampler(uint32_t d) : domid(d) {}
  uint32_t domid;
  std::atomic<bool> stop{false};
  std::vector<double> stops_ms;   // durations
  std::vector<double> starts_ms;  // CLOCK_MONOTONIC of each start
  uint64_t samples = 0;
  void Run() {
    bool in = false;
    double t_in = 0;
    while (!stop.load()) {
      auto st = GetXenRunState(domid);
      const double t = NowMs();
      ++samples;
      if (!st.ok() || !st->exists) break;
      const bool stopped = !st->can_run();
      if (stopped && !in) {
        in = true;
        t_in = t;
      } else if (!stopped && in) {
        in = false;
        stops_ms.push_back(t - t_in);
        starts_ms.push_back(t_in);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }
  std::string Json() const {
    char b[512];
    std::snprintf(b, sizeof b,
                  "\"stops\": %zu, \"stop_ms_median\": %.2f, \"stop_ms_mean\": %.2f, "
                  "\"stop_ms_max\": %.2f, \"first_stop_at_ms\": %.1f, \"samples\": %" PRIu64,
                  stops_ms.size(), Median(stops_ms), Mean(stops_ms),
                  stops_ms.empty() ? 0 : *std::max_element(stops_ms.begin(), stops_ms.end()),
                  starts_ms.empty() ? 0 : starts_ms.front(), samples);
    return b;
  }
};

int Ftsync(uint32_t domid, const std::string& mode, int epochs, int interval_ms, const std::string& dir) {
  XenDomainOptions o;
  o.suspend = mode == "coop" ? XenSuspend::kCooperative : XenSuspend::kPause;
  o.calibrate_rounds = 1;
  auto d = XenDomain::Open(domid, o);
  if (!d.ok()) {
    std::fprintf(stderr, "xen_bench: %s\n", d.status().ToString().c_str());
    return 1;
  }
  if (std::system(("rm -rf '" + dir + "'").c_str()) != 0) {}
  auto rep = ReplicaImage::Open(dir);
  if (!rep.ok()) {
    std::fprintf(stderr, "xen_bench: %s\n", rep.status().ToString().c_str());
    return 1;
  }
  Status s = (*d)->EnableDirtyLog();
  if (!s.ok()) {
    std::fprintf(stderr, "xen_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  MemoryPipe fwd, back;
  Status rs;
  Receiver receiver(rep->get(), &fwd.source(), &back.sink());
  std::thread rt([&] {
    rs = receiver.Handshake();
    if (rs.ok()) rs = receiver.Run();
    if (!rs.ok()) back.sink().Close().ok();
  });
  CheckpointerOptions co;
  co.max_in_flight = 1;
  Sampler sampler(domid);
  std::vector<EpochStats> hist;
  {
    Checkpointer cp(d->get(), &fwd.sink(), &back.source(), co);
    s = cp.Start();
    if (s.ok()) s = cp.WaitForAck(0);
    std::thread st([&] { sampler.Run(); });  // after epoch 0: checkpoints only
    for (int e = 1; s.ok() && e <= epochs; ++e) {
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
      s = cp.Checkpoint();
      if (s.ok()) s = cp.WaitForAck(cp.next_epoch() - 1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    sampler.stop = true;
    st.join();
    hist = cp.stats_history();
    Status f = cp.Finish();
    if (s.ok()) s = f;
  }
  fwd.sink().Close().ok();
  rt.join();
  if (!s.ok() || !rs.ok()) {
    std::fprintf(stderr, "xen_bench: %s / %s\n", s.ToString().c_str(), rs.ToString().c_str());
    return 1;
  }
  std::vector<double> paused, bytes, dirty;
  for (const EpochStats& e : hist) {
    if (e.epoch == 0) continue;
    paused.push_back(e.paused_us / 1e3);
    bytes.push_back(static_cast<double>(e.bytes_wire));
    dirty.push_back(static_cast<double>(e.dirty_pages));
  }
  std::printf("XENBENCH {\"system\": \"ftsync-%s\", \"epochs\": %zu, \"interval_ms\": %d, "
              "\"engine_paused_ms_median\": %.2f, \"engine_paused_ms_mean\": %.2f, "
              "\"bytes_per_epoch_median\": %.0f, \"bytes_per_epoch_mean\": %.0f, "
              "\"dirty_pages_median\": %.0f, %s}\n",
              mode.c_str(), paused.size(), interval_ms, Median(paused), Mean(paused), Median(bytes),
              Mean(bytes), Median(dirty), sampler.Json().c_str());
  return 0;
}

// Bytes the count log had reached at time t (the last entry at or before t).
double BytesAt(const std::vector<std::pair<double, double>>& log, double t) {
  double b = 0;
  for (const auto& e : log)
    if (e.first <= t) b = e.second;
  return b;
}

int Sample(uint32_t domid, double seconds, const char* count_log) {
  Sampler s(domid);
  std::thread t([&] { s.Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(seconds * 1000)));
  s.stop = true;
  t.join();
  std::string extra;
  if (count_log) {
    std::vector<std::pair<double, double>> log;
    if (FILE* f = std::fopen(count_log, "r")) {
      double a, b;
      while (std::fscanf(f, "%lf %lf", &a, &b) == 2) log.push_back({a, b});
      std::fclose(f);
    }
    const size_t k = s.starts_ms.size();
    char b[256];
    if (k >= 3 && !log.empty()) {
      const double bytes = BytesAt(log, s.starts_ms[k - 1]) - BytesAt(log, s.starts_ms[1]);
      std::snprintf(b, sizeof b, ", \"bytes_per_checkpoint\": %.0f, \"stream_bytes_total\": %.0f",
                    bytes / static_cast<double>(k - 2), log.back().second);
    } else {
      std::snprintf(b, sizeof b, ", \"bytes_per_checkpoint\": null, \"stream_bytes_total\": %.0f",
                    log.empty() ? 0.0 : log.back().second);
    }
    extra = b;
  }
  // Checkpoint stops only: the first stop ends the initial live migration.
  Sampler ck(domid);
  for (size_t i = 1; i < s.stops_ms.size(); ++i) {
    ck.stops_ms.push_back(s.stops_ms[i]);
    ck.starts_ms.push_back(s.starts_ms[i]);
  }
  ck.samples = s.samples;
  std::printf("XENBENCH {\"system\": \"sampler\", %s%s}\n", ck.Json().c_str(), extra.c_str());
  return 0;
}

int Count(const char* log) {
  FILE* f = std::fopen(log, "w");
  if (!f) return 1;
  std::vector<char> buf(1 << 16);
  uint64_t total = 0;
  double last = 0;
  for (;;) {
    ssize_t n = ::read(0, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(1, buf.data() + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) goto done;
      off += w;
    }
    total += static_cast<uint64_t>(n);
    const double t = NowMs();
    if (t - last >= 50) {
      std::fprintf(f, "%.1f %" PRIu64 "\n", t, total);
      std::fflush(f);
      last = t;
    }
  }
done:
  std::fprintf(f, "%.1f %" PRIu64 "\n", NowMs(), total);
  std::fclose(f);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "ftsync" && argc == 7)
    return Ftsync(std::strtoul(argv[2], nullptr, 0), argv[3], std::atoi(argv[4]), std::atoi(argv[5]), argv[6]);
  if (cmd == "sample" && (argc == 4 || argc == 5))
    return Sample(std::strtoul(argv[2], nullptr, 0), std::atof(argv[3]), argc == 5 ? argv[4] : nullptr);
  if (cmd == "count" && argc == 3) return Count(argv[2]);
  std::fprintf(stderr,
               "usage: xen_bench ftsync DOMID pause|coop EPOCHS INTERVAL_MS DIR\n"
               "       xen_bench sample DOMID SECONDS [COUNT_LOG]\n"
               "       xen_bench count LOG\n");
  return 2;
}
