// ftsync-local-demo: the whole engine across three processes on one host.
//
//   primary  an in-memory domain under a guest-like write workload, protected
//            by a Checkpointer every --interval ms over a Unix socket
//   backup   a Receiver applying epochs into a replica directory
//   driver   starts both, SIGKILLs the primary mid-run, waits for the backup
//            to notice, and checks the replica byte for byte against the
//            primary's memory at the backup's last complete epoch (the
//            workload is deterministic by seed, so the driver replays it)
//
// This stands in for `make demo` until the QEMU path exists.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ftsync/checkpointer.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "testing/fake_domain.h"
#include "testing/workload.h"

namespace {
using namespace ftsync;

struct Config {
  uint64_t frames = 16384;  // 64 MiB guest
  int interval_ms = 25;
  int kill_after_ms = 1500;
  uint64_t seed = 42;
  std::string workload = "mixed";
  std::string dir = "/tmp/ftsync-local-demo";
};

uint64_t NowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

testing::WorkloadParams Params() {
  testing::WorkloadParams p;
  p.writes_per_step = 400;
  return p;
}

// Child: the primary. Reports one line per epoch on `report`.
[[noreturn]] void RunPrimary(const Config& c, int sock, int report) {
  testing::FakeDomain dom(c.frames, 4096, "demo-guest", c.seed);
  testing::Workload work(*testing::ParseWorkloadKind(c.workload), c.seed, Params());
  auto out = MakeFdSink(sock);
  auto in = MakeFdSource(sock);
  CheckpointerOptions o;
  o.max_in_flight = 2;
  Checkpointer cp(&dom, out.get(), in.get(), o);
  Status s = cp.Start();
  for (uint64_t e = 1; s.ok(); ++e) {
    usleep(static_cast<useconds_t>(c.interval_ms) * 1000);
    s = work.Step(&dom);  // the guest ran for one interval
    if (s.ok()) s = cp.Checkpoint();
    if (s.ok()) s = cp.PollBackChannel(0);
    const EpochStats& es = cp.stats().last;
    dprintf(report, "epoch %lu dirty %lu wire %lu paused %lu acked %ld\n",
            static_cast<unsigned long>(es.epoch), static_cast<unsigned long>(es.dirty_pages),
            static_cast<unsigned long>(es.bytes_wire), static_cast<unsigned long>(es.paused_us),
            static_cast<long>(cp.last_acked_epoch()));
  }
  dprintf(report, "error %s\n", s.ToString().c_str());
  _exit(1);
}

// Child: the backup. Exits 0 after END, 2 when the primary is gone.
[[noreturn]] void RunBackup(const Config& c, int sock, int report) {
  auto rep = ReplicaImage::Open(c.dir);
  if (!rep.ok()) {
    dprintf(report, "backup error %s\n", rep.status().ToString().c_str());
    _exit(1);
  }
  auto in = MakeFdSource(sock);
  auto out = MakeFdSink(sock);
  Receiver rx(rep->get(), in.get(), out.get());
  Status s = rx.Handshake();
  if (s.ok()) s = rx.Run();
  auto last = rx.last_complete_epoch();
  dprintf(report, "backup %s last %ld at %lu\n", s.ToString().c_str(), last ? static_cast<long>(*last) : -1L,
          static_cast<unsigned long>(NowUs()));
  _exit(s.ok() ? 0 : s.IsFailover() ? 2 : 1);
}

double Percentile(std::vector<uint64_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))]);
}

int Usage() {
  std::fprintf(stderr,
               "usage: ftsync-local-demo [--frames N] [--interval MS] [--kill-after MS]\n"
               "                         [--workload sequential|hot|sparse|scribble|zero|mixed]\n"
               "                         [--seed N] [--dir DIR]\n"
               "defaults: 16384 frames (64 MiB), 25 ms, kill after 1500 ms, mixed, seed 42,\n"
               "          /tmp/ftsync-local-demo\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string v = argv[++i];
    if (a == "--frames") c.frames = std::strtoull(v.c_str(), nullptr, 0);
    else if (a == "--interval") c.interval_ms = std::atoi(v.c_str());
    else if (a == "--kill-after") c.kill_after_ms = std::atoi(v.c_str());
    else if (a == "--workload") c.workload = v;
    else if (a == "--seed") c.seed = std::strtoull(v.c_str(), nullptr, 0);
    else if (a == "--dir") c.dir = v;
    else return Usage();
  }
  if (!testing::ParseWorkloadKind(c.workload).ok() || c.frames == 0) return Usage();
  std::string rm = "rm -rf '" + c.dir + "'";
  if (std::system(rm.c_str()) != 0) return 1;

  int sv[2], rp[2], rb[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || pipe(rp) || pipe(rb)) return 1;
  std::printf("ftsync local demo: %lu MiB domain, %s workload, epoch every %d ms\n",
              static_cast<unsigned long>(c.frames * 4096 >> 20), c.workload.c_str(), c.interval_ms);
  pid_t backup = fork();
  if (backup == 0) {
    close(sv[0]);
    RunBackup(c, sv[1], rb[1]);
  }
  pid_t primary = fork();
  if (primary == 0) {
    close(sv[1]);
    RunPrimary(c, sv[0], rp[1]);
  }
  close(sv[0]);
  close(sv[1]);
  close(rp[1]);
  close(rb[1]);

  // Collect the primary's epoch lines until the kill time.
  std::vector<uint64_t> paused, dirty;
  uint64_t wire = 0, epochs = 0;
  long acked = -1;
  std::string buf;
  uint64_t start = NowUs();
  while (NowUs() - start < static_cast<uint64_t>(c.kill_after_ms) * 1000) {
    pollfd p{rp[0], POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    char tmp[4096];
    ssize_t n = read(rp[0], tmp, sizeof tmp);
    if (n <= 0) break;
    buf.append(tmp, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      unsigned long e, d, w, pu;
      long a;
      if (std::sscanf(line.c_str(), "epoch %lu dirty %lu wire %lu paused %lu acked %ld", &e, &d, &w, &pu, &a) == 5) {
        epochs = e;
        dirty.push_back(d);
        paused.push_back(pu);
        wire += w;
        acked = a;
      } else {
        std::printf("primary: %s\n", line.c_str());
      }
    }
  }
  uint64_t kill_us = NowUs();
  kill(primary, SIGKILL);
  waitpid(primary, nullptr, 0);
  std::printf("SIGKILL primary after epoch %lu (last ACK it had seen: %ld)\n",
              static_cast<unsigned long>(epochs), acked);

  char line[512] = {};
  ssize_t n = read(rb[0], line, sizeof line - 1);
  int st = 0;
  waitpid(backup, &st, 0);
  long last = -1;
  unsigned long detected_at = 0;
  if (n > 0) {
    std::printf("backup: %s", line);
    const char* p = std::strstr(line, " last ");
    if (p) std::sscanf(p, " last %ld at %lu", &last, &detected_at);
  }
  bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 2 && last >= acked && last >= 0;

  // Replay the deterministic guest to epoch `last` and compare.
  uint64_t differing = 0;
  if (last >= 0) {
    testing::FakeDomain ref(c.frames, 4096, "replay", c.seed);
    testing::Workload work(*testing::ParseWorkloadKind(c.workload), c.seed, Params());
    for (long e = 1; e <= last; ++e) (void)work.Step(&ref);
    auto rep = ReplicaImage::Open(c.dir);
    std::vector<uint8_t> page(4096);
    for (uint64_t pfn = 0; rep.ok() && pfn < c.frames; ++pfn) {
      if (!(*rep)->ReadFrame(pfn, page.data()).ok() ||
          std::memcmp(page.data(), ref.Frame(pfn).data(), 4096) != 0)
        ++differing;
    }
    ok = ok && rep.ok() && differing == 0;
  }
  std::printf("\nsummary\n");
  std::printf("  epochs sent             %lu (+ epoch 0, the full copy)\n", static_cast<unsigned long>(epochs));
  std::printf("  bytes on the wire       %.1f MiB\n", static_cast<double>(wire) / (1 << 20));
  std::printf("  dirty pages per epoch   median %.0f\n", Percentile(dirty, 0.5));
  std::printf("  guest pause             median %.0f us, p99 %.0f us (harvest + copy + state)\n",
              Percentile(paused, 0.5), Percentile(paused, 0.99));
  std::printf("  backup noticed the kill %.1f ms after it\n",
              detected_at > kill_us ? static_cast<double>(detected_at - kill_us) / 1000 : 0.0);
  std::printf("  backup's last epoch     %ld (primary had seen ACK %ld)\n", last, acked);
  std::printf("  replica vs primary      %lu of %lu frames differ at epoch %ld\n",
              static_cast<unsigned long>(differing), static_cast<unsigned long>(c.frames), last);
  std::printf("%s\n", ok ? "demo: OK" : "demo: FAILED");
  std::system(rm.c_str());
  return ok ? 0 : 1;
}
