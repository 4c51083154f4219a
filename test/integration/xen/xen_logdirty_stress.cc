// ftsync: diagnostic for the nested-Xen harness. Enables log-dirty on a
// domain through XenDomain and runs pause/CLEAN/unpause cycles for a while,
// printing what happened; used to study when a domU dies under log-dirty.
//   xen_logdirty_stress DOMID SECONDS [PERIOD_MS=100] [READ=0]
#include <time.h>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
#include "ftsync/xen.h"
using namespace ftsync;
static double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
int main(int argc, char** argv) {
  if (argc < 3) return 126;
  uint32_t domid = std::strtoul(argv[1], nullptr, 0);
  double secs = std::atof(argv[2]);
  int period = argc > 3 ? std::atoi(argv[3]) : 100;
  bool read = argc > 4 && std::atoi(argv[4]);
  auto d = XenDomain::Open(domid);
  if (!d.ok()) { std::printf("open: %s\n", d.status().ToString().c_str()); return 1; }
  double t0 = NowMs();
  Status st = (*d)->EnableDirtyLog();
  std::printf("enable: %s (%.1f ms)\n", st.ToString().c_str(), NowMs() - t0);
  if (!st.ok()) return 1;
  DirtyBitmap bm;
  int cycles = 0;
  uint64_t total = 0;
  std::vector<uint8_t> buf;
  while (NowMs() - t0 < secs * 1e3) {
    std::this_thread::sleep_for(std::chrono::milliseconds(period));
    st = (*d)->Suspend();
    if (st.ok()) st = (*d)->FetchAndClearDirty(&bm);
    if (st.ok() && read) {
      std::vector<uint64_t> pfns;
      bm.AppendSetBits(&pfns);
      buf.resize(pfns.size() * 4096);
      std::vector<int> errs(pfns.size());
      st = (*d)->ReadFrames(pfns, buf.data(), errs);
    }
    Status r = (*d)->Resume();
    if (!st.ok() || !r.ok()) {
      std::printf("cycle %d at %.0f ms: %s / %s\n", cycles, NowMs() - t0, st.ToString().c_str(),
                  r.ToString().c_str());
      return 1;
    }
    total += bm.Count();
    ++cycles;
  }
  std::printf("cycles %d, dirty pages %" PRIu64 "\n", cycles, total);
  return 0;
}
