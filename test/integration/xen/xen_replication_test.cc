// ftsync: replication of a real Xen PVH domU through XenDomain, run inside
// dom0 by the nested-Xen harness (test/integration/xen/). Own main, no
// Catch2.
//
//   xen_replication_test DOMID [EPOCHS=10] [INTERVAL_MS=200] [REPLICA_DIR]
//                        [MAX_FRAMES=0]
//
// A Checkpointer on XenDomain streams to a Receiver (on a thread) over two
// MemoryPipes into REPLICA_DIR while the domU runs. Before the final epoch
// the domU is paused from outside (Xen's pause is counted, so the
// Checkpointer's own pause/unpause nests inside it); after that epoch's ACK
// the replica's memory.img is compared, frame by frame, with the domU's
// memory read through XenDomain::ReadFrames. Unreadable frames are holes
// (the Checkpointer sends them as zeros): counted, and checked to be zero
// in the replica. Prints "ok"/"FAIL" per check and
// "xen-replication: N passed, M failed"; exit status = failed checks.
#include <time.h>
#include <unistd.h>

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
int g_passed = 0, g_failed = 0;
void Check(bool ok, const std::string& what, const std::string& detail = "") {
  if (ok) {
    std::printf("ok   %s\n", what.c_str());
    ++g_passed;
  } else {
    std::printf("FAIL %s%s%s\n", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
    ++g_failed;
  }
  std::fflush(stdout);
}
double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
std::string XlState(uint32_t domid) {
  std::string cmd = "xl list " + std::to_string(domid) + " 2>&1 | awk 'NR==2 {print $5}'";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[128];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return "state '" + out + "'";
}
bool Alive(uint32_t domid) {
  std::string st = XlState(domid);  // "state 'r-----'"
  return st.size() > 9 && st.find('c') == std::string::npos && st.find("--s") == std::string::npos &&
         (st.find('r') != std::string::npos || st.find('b') != std::string::npos);
}
int Finish() {
  std::printf("xen-replication: %d passed, %d failed\n", g_passed, g_failed);
  return g_failed;
}
}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DOMID [EPOCHS] [INTERVAL_MS] [REPLICA_DIR] [MAX_FRAMES]\n",
                 argv[0]);
    return 126;
  }
  const uint32_t domid = static_cast<uint32_t>(std::strtoul(argv[1], nullptr, 0));
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 10;
  const int interval_ms = argc > 3 ? std::atoi(argv[3]) : 200;
  const std::string dir = argc > 4 ? argv[4] : "/tmp/ftsync-xen-replica";
  XenDomainOptions xopt;
  xopt.max_frames = argc > 5 ? std::strtoull(argv[5], nullptr, 0) : 0;

  // Error paths: clear messages.
  {
    auto r = XenDomain::Open(31000);
    Check(!r.ok() && r.status().code() == Errc::kNotFound, "Open(no such domain) is kNotFound",
          r.ok() ? "opened" : r.status().ToString());
    if (!r.ok()) std::printf("     %s\n", r.status().ToString().c_str());
    auto z = XenDomain::Open(0);
    Check(!z.ok(), "Open(0) refused", z.ok() ? "opened" : "");
  }

  auto opened = XenDomain::Open(domid, xopt);
  Check(opened.ok(), "XenDomain::Open(" + std::to_string(domid) + ")",
        opened.ok() ? "" : opened.status().ToString());
  if (!opened.ok()) return Finish();
  std::unique_ptr<XenDomain> dom = std::move(opened).value();
  std::printf("     %s: max_gpfn 0x%" PRIx64 ", nr_pages %" PRIu64 ", FrameCount %" PRIu64
              " (%" PRIu64 " MiB)\n",
              dom->Name().c_str(), dom->max_gpfn(), dom->nr_pages(), dom->FrameCount(),
              dom->FrameCount() * 4096 >> 20);

  // A second handle to hold the domain paused around the final epoch.
  auto holder = XenDomain::Open(domid, xopt);
  Check(holder.ok(), "second XenDomain handle", holder.ok() ? "" : holder.status().ToString());
  if (!holder.ok()) return Finish();

  // Log-dirty basics: enable twice (idempotent), exact while paused.
  {
    Status e1 = dom->EnableDirtyLog();
    Status e2 = dom->EnableDirtyLog();
    Check(e1.ok() && e2.ok(), "EnableDirtyLog twice", e1.ToString() + " / " + e2.ToString());

    DirtyBitmap bm;
    Status f = dom->FetchAndClearDirty(&bm);
    Check(f.ok() && bm.size() == dom->FrameCount(), "FetchAndClearDirty",
          f.ToString());
    std::printf("     first fetch: %" PRIu64 " dirty (hypervisor dirty_count %" PRIu64 ")\n",
                bm.Count(), dom->last_hw_dirty());
    double t0 = NowMs();
    Status p = dom->Suspend();
    double t1 = NowMs();
    Status f1 = dom->FetchAndClearDirty(&bm);
    Status f2 = dom->FetchAndClearDirty(&bm);
    uint64_t second = bm.Count();
    uint64_t probe[2] = {1, dom->FrameCount() - 1};
    Status rd = dom->Redirty(probe);
    Status f3 = dom->FetchAndClearDirty(&bm);
    bool redirty_ok = f3.ok() && bm.Count() == 2 && bm.Test(1) && bm.Test(dom->FrameCount() - 1);
    double t2 = NowMs();
    Status r = dom->Resume();
    double t3 = NowMs();
    Check(p.ok() && r.ok(), "Suspend/Resume (xc_domain_pause/unpause)",
          p.ToString() + " / " + r.ToString());
    std::printf("     pause %.2f ms, unpause %.2f ms\n", t1 - t0, t3 - t2);
    Check(f1.ok() && f2.ok() && second == 0, "two CLEANs while paused: second reports 0",
          std::to_string(second) + " dirty");
    Check(rd.ok() && redirty_ok, "Redirty'd frames come back in the next fetch (only them)",
          std::to_string(bm.Count()) + " set");
    // Left on: the replication handle adopts it (re-enabling log-dirty on
    // a running guest triple-faulted it in 2 of 5 nested runs).
  }

  // SaveState alone while paused (RestoreState is exercised at the end:
  // setcontext on a live guest is the riskiest call here).
  {
    Status p = dom->Suspend();
    auto s1 = dom->SaveState();
    Status r = dom->Resume();
    Check(p.ok() && r.ok() && s1.ok() && !s1->empty(), "SaveState (xc_domain_hvm_getcontext)",
          s1.ok() ? "" : s1.status().ToString());
    if (s1.ok()) std::printf("     HVM context blob %zu bytes\n", s1->size());
  }

  // Replication.
  std::string rm = "rm -rf '" + dir + "'";
  if (std::system(rm.c_str()) != 0) {}
  auto rep = ReplicaImage::Open(dir);
  Check(rep.ok(), "ReplicaImage::Open(" + dir + ")", rep.ok() ? "" : rep.status().ToString());
  if (!rep.ok()) return Finish();
  std::unique_ptr<XenDomain> rdom;
  // The replicated handle: log-dirty plus the frames Xen writes untracked.
  XenDomainOptions ropt = xopt;
  ropt.calibrate_rounds = 2;
  auto ropened = XenDomain::Open(domid, ropt);
  Check(ropened.ok(), "XenDomain::Open with calibration", ropened.ok() ? "" : ropened.status().ToString());
  if (!ropened.ok()) return Finish();
  rdom = std::move(ropened).value();
  double tc = NowMs();
  Status ce = rdom->EnableDirtyLog();
  Check(ce.ok(), "EnableDirtyLog + CalibrateUntrackedWrites(2)", ce.ToString());
  std::printf("     calibration %.0f ms; untracked frames:", NowMs() - tc);
  for (uint64_t p : rdom->untracked_frames()) std::printf(" 0x%" PRIx64, p);
  std::printf("\n");
  MemoryPipe fwd, back;
  Status recv_status;
  Receiver receiver(rep->get(), &fwd.source(), &back.sink());
  std::thread rt([&] {
    recv_status = receiver.Handshake();
    if (recv_status.ok()) recv_status = receiver.Run();
    if (!recv_status.ok()) back.sink().Close().ok();
  });

  CheckpointerOptions copt;
  copt.max_in_flight = 1;
  bool ckpt_ok = true;
  std::vector<EpochStats> hist;
  {
    Checkpointer cp(rdom.get(), &fwd.sink(), &back.source(), copt);
    double t0 = NowMs();
    Status st = cp.Start();
    Check(st.ok(), "Checkpointer::Start (epoch 0, full copy + pre-copy)", st.ToString());
    if (st.ok()) st = cp.WaitForAck(0);
    Check(st.ok(), "ACK(0)", st.ToString());
    std::printf("     epoch 0 + ACK in %.0f ms\n", NowMs() - t0);
    ckpt_ok = st.ok();
    for (int e = 1; ckpt_ok && e <= epochs; ++e) {
      std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
      if (e == epochs) {
        Status hp = (*holder)->Suspend();  // outer pause: stays after the epoch
        Check(hp.ok(), "pause domU before the final epoch", hp.ToString());
      }
      st = cp.Checkpoint();
      if (st.ok()) st = cp.WaitForAck(cp.next_epoch() - 1);
      if (!st.ok()) {
        Check(false, "epoch " + std::to_string(e), st.ToString());
        ckpt_ok = false;
      }
    }
    if (ckpt_ok) Check(true, std::to_string(epochs) + " epochs checkpointed and ACKed");
    hist = cp.stats_history();
    for (const EpochStats& s : hist)
      std::printf("     epoch %2" PRIu64 ": dirty %5" PRIu64 " unreadable %5" PRIu64
                  " paused %6.2f ms (suspend %.2f harvest %.2f copy %.2f state %.2f resume %.2f)"
                  " wire %" PRIu64 " B state %" PRIu64 " B ack %.2f ms\n",
                  s.epoch, s.dirty_pages, s.unreadable_pages, s.paused_us / 1e3,
                  s.suspend_us / 1e3, s.harvest_us / 1e3, s.copy_us / 1e3,
                  s.state_save_us / 1e3, s.resume_us / 1e3, s.bytes_wire, s.state_bytes,
                  s.ack_latency_us / 1e3);
    Status fin = cp.Finish();
    Check(fin.ok(), "Checkpointer::Finish (END)", fin.ToString());
  }
  fwd.sink().Close().ok();  // EOF for the Receiver if the session failed early
  rt.join();
  Check(recv_status.ok(), "Receiver ran to END", recv_status.ToString());
  auto last = (*rep)->LastComplete();
  Check(last && last->epoch == static_cast<uint64_t>(epochs) && last->frame_count == dom->FrameCount(),
        "replica complete at the final epoch",
        last ? "epoch " + std::to_string(last->epoch) : "none");

  // Compare, domU still paused.
  {
    const uint64_t n = dom->FrameCount();
    const size_t chunk = 1024;
    std::vector<uint64_t> pfns;
    std::vector<uint8_t> live(chunk * 4096), mine(4096);
    std::vector<int> errs;
    uint64_t same = 0, differ = 0, holes = 0, holes_nonzero = 0, read_fail = 0;
    int shown = 0;
    static const uint8_t zero[4096] = {};
    std::vector<uint64_t> differing;
    for (uint64_t base = 0; base < n; base += chunk) {
      size_t k = static_cast<size_t>(std::min<uint64_t>(chunk, n - base));
      pfns.resize(k);
      for (size_t i = 0; i < k; ++i) pfns[i] = base + i;
      errs.assign(k, 0);
      Status rs = dom->ReadFrames(pfns, live.data(), errs);
      if (!rs.ok()) {
        if (!read_fail++) std::printf("     ReadFrames: %s\n", rs.ToString().c_str());
        continue;
      }
      for (size_t i = 0; i < k; ++i) {
        Status r = (*rep)->ReadFrame(base + i, mine.data());
        if (!r.ok()) { ++read_fail; continue; }
        if (errs[i]) {
          ++holes;
          if (std::memcmp(mine.data(), zero, 4096)) ++holes_nonzero;
          continue;
        }
        if (std::memcmp(mine.data(), live.data() + i * 4096, 4096) == 0) {
          ++same;
        } else {
          ++differ;
          if (shown++ < 5) {
            const uint8_t* l = live.data() + i * 4096;
            int first = -1, lastb = -1, nb = 0;
            for (int b = 0; b < 4096; ++b)
              if (l[b] != mine[b]) { if (first < 0) first = b; lastb = b; ++nb; }
            std::printf("     frame 0x%" PRIx64 " differs: %d bytes in [0x%x, 0x%x]; replica",
                        base + i, nb, first, lastb);
            for (int b = first & ~7; b < (first & ~7) + 16 && b < 4096; ++b) std::printf(" %02x", mine[b]);
            std::printf(" live");
            for (int b = first & ~7; b < (first & ~7) + 16 && b < 4096; ++b) std::printf(" %02x", l[b]);
            std::printf("\n");
            differing.push_back(base + i);
          }
        }
      }
    }
    std::printf("     frames: %" PRIu64 " equal, %" PRIu64 " differ, %" PRIu64
                " unreadable (holes), %" PRIu64 " read failures\n",
                same, differ, holes, read_fail);
    // Does something change the differing frames while the domU stays
    // paused (a writer log-dirty does not see)?
    if (!differing.empty()) {
      std::vector<uint8_t> a(differing.size() * 4096), b(differing.size() * 4096);
      std::vector<int> ea(differing.size()), eb(differing.size());
      (void)dom->ReadFrames(differing, a.data(), ea);
      std::this_thread::sleep_for(std::chrono::seconds(2));
      (void)dom->ReadFrames(differing, b.data(), eb);
      std::printf("     differing frames re-read 2 s later, still paused: %s\n",
                  a == b ? "unchanged" : "CHANGED (written while paused)");
    }
    Check(read_fail == 0, "every frame read from domU and replica");
    Check(differ == 0 && same > 0, "replica memory.img == paused domU, frame by frame",
          std::to_string(differ) + " frames differ");
    Check(holes_nonzero == 0, "unreadable frames are zeros in the replica",
          std::to_string(holes_nonzero) + " nonzero");
  }
  Status hr = (*holder)->Resume();
  Check(hr.ok(), "unpause domU", hr.ToString());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  Check(Alive(domid), "domU alive 2 s after replication", XlState(domid));

  // Risky calls last, each followed by a liveness check.
  {
    Status a = dom->EnableDirtyLog();
    Status e3 = (*holder)->EnableDirtyLog();  // already on from another handle
    Check(a.ok() && e3.ok(), "EnableDirtyLog while already on from another handle", e3.ToString());
    Status f = (*holder)->DisableDirtyLog();
    Status g = dom->DisableDirtyLog();
    Check(f.ok() && g.ok(), "DisableDirtyLog twice (two handles)", f.ToString() + " / " + g.ToString());
    std::this_thread::sleep_for(std::chrono::seconds(2));
    Check(Alive(domid), "domU alive 2 s after log-dirty ENABLE (adopted) + OFF", XlState(domid));
  }
  // SaveState while paused; RestoreState of the same blob; guest resumes.
  {
    Status p = dom->Suspend();
    auto s1 = dom->SaveState();
    Status rs = s1.ok() ? dom->RestoreState(*s1) : Status(Errc::kInternal, "no blob");
    auto s2 = dom->SaveState();
    Status r = dom->Resume();
    Check(p.ok() && s1.ok() && !s1->empty(), "SaveState (xc_domain_hvm_getcontext)",
          s1.ok() ? "" : s1.status().ToString());
    if (s1.ok()) std::printf("     HVM context blob %zu bytes\n", s1->size());
    Check(rs.ok() && r.ok(), "RestoreState of the same blob (xc_domain_hvm_setcontext)",
          rs.ToString());
    Check(s2.ok() && s1.ok() && s2->size() == s1->size(), "SaveState after RestoreState, same size");
  }

  std::this_thread::sleep_for(std::chrono::seconds(2));
  Check(Alive(domid), "domU alive 2 s after RestoreState of its own context", XlState(domid));
  return Finish();
}
