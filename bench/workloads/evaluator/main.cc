// ftsync_workload_eval: runs one workload guest under QEMU/TCG and evaluates
// every memory-sync configuration on the same memory states (engine.h).
//
//   ftsync_workload_eval --workload NAME --image-dir DIR --json PATH [options]
//   ftsync_workload_eval --synthetic [--json PATH]     (no QEMU: self-check)
//
// The guest (bench/workloads/lib/build-image.sh): Debian's kernel, a tiny
// initramfs, root on a virtio disk (snapshot=on: the image is not changed),
// RAM in a share=on file under /dev/shm registered for dirty tracking by
// ftsync's preload library. It boots at full speed; when its init prints
// FTSYNC-WL-LOAD-START the evaluation begins:
//   pause (QMP stop) -> enable the dirty log -> epoch 0 (every page)
//   repeat: cont, run tick_ms, stop, FetchAndClearDirty, engine.OnTick
// until the guest prints FTSYNC-WL-LOAD-END or --max-guest-s passes. The
// guest's clock stands still while it is stopped, so the evaluation does not
// slow the workload down in guest time.
//
// Pause of the real pipeline, per epoch end and epoch length: stop + dirty
// log harvest (FetchAndClearDirty of the tick) + staging copy of the epoch's
// dirty pages + device state save (QEMU migration of CPU/device state, as
// the Checkpointer does) + cont. The harvest is the tick's (PAGEMAP_SCAN
// over the whole RAM either way, so its cost hardly depends on how long the
// log ran).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine.h"
#include "../../report.h"
#include "ftsync/qemu.h"
#include "spec_drivers.h"

namespace ftsync::wl {
namespace {

std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted = true; }

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

struct Args {
  std::string workload;
  std::string description;
  std::string image_dir;   // vmlinuz, initrd.gz, NAME/root.img
  std::string build;       // lib/libftsync_qemu_preload.so
  std::string json_path;
  std::string series_path;
  std::string serial_copy;  // where the guest's console log is kept
  uint64_t ram_mb = 512;
  uint64_t shadow_mb = 0;  // 0: ram_mb / 4
  double max_guest_s = 75;
  int boot_timeout_s = 900;
  bool save_state = true;
  bool synthetic = false;
  uint64_t synthetic_ticks = 400;
  EngineOptions engine;
  std::vector<std::string> policies = {"all"};
};

void Usage(FILE* f) {
  std::fprintf(f,
      "usage: ftsync_workload_eval --workload NAME --image-dir DIR [options]\n"
      "       ftsync_workload_eval --synthetic [options]\n"
      "  --workload NAME       the workload (its disk is DIR/NAME/root.img)\n"
      "  --description TEXT    recorded in the JSON\n"
      "  --image-dir DIR       vmlinuz, initrd.gz and NAME/root.img (build-image.sh)\n"
      "  --build DIR           build directory with lib/libftsync_qemu_preload.so [build]\n"
      "  --ram-mb N            guest RAM [512]\n"
      "  --tick-ms X           guest run time per tick [5]\n"
      "  --epochs LIST         epoch lengths in ms, multiples of the tick [25,100,200]\n"
      "  --max-guest-s X       stop after this much guest time under evaluation [75]\n"
      "  --boot-timeout-s N    wait this long (wall) for the load to start [900]\n"
      "  --shadow-mb N         memory budget of each shadow store [guest RAM / 4]\n"
      "  --verify-every N      check every Nth pfn's decoding (0: off) [16]\n"
      "  --policies LIST       speculation policies (all, none, or names) [all]\n"
      "  --no-save-state       leave the device-state save out of the pause\n"
      "  --threads N           evaluate epoch lengths on N threads (1 or 2) [2]\n"
      "  --json PATH           summary JSON\n"
      "  --series PATH         per-epoch series JSON (for the plots)\n"
      "  --serial-copy PATH    keep the guest's console log here\n"
      "  --synthetic           no QEMU: a generated write stream (self-check)\n"
      "  --synthetic-ticks N   its length [400]\n");
}

bool ParseArgs(int argc, char** argv, Args* a) {
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ftsync_workload_eval: %s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--workload") a->workload = val();
    else if (k == "--description") a->description = val();
    else if (k == "--image-dir") a->image_dir = val();
    else if (k == "--build") a->build = val();
    else if (k == "--ram-mb") a->ram_mb = std::stoull(val());
    else if (k == "--tick-ms") a->engine.tick_ms = std::stod(val());
    else if (k == "--epochs") {
      a->engine.epoch_ms.clear();
      std::stringstream ss(val());
      std::string t;
      while (std::getline(ss, t, ',')) a->engine.epoch_ms.push_back(std::stoi(t));
    } else if (k == "--max-guest-s") a->max_guest_s = std::stod(val());
    else if (k == "--boot-timeout-s") a->boot_timeout_s = std::stoi(val());
    else if (k == "--shadow-mb") a->shadow_mb = std::stoull(val());
    else if (k == "--verify-every") a->engine.verify_every = std::stoull(val());
    else if (k == "--policies") {
      a->policies.clear();
      std::stringstream ss(val());
      std::string t;
      while (std::getline(ss, t, ',')) a->policies.push_back(t);
    } else if (k == "--no-save-state") a->save_state = false;
    else if (k == "--threads") a->engine.threads = std::stoi(val());
    else if (k == "--json") a->json_path = val();
    else if (k == "--series") a->series_path = val();
    else if (k == "--serial-copy") a->serial_copy = val();
    else if (k == "--synthetic") a->synthetic = true;
    else if (k == "--synthetic-ticks") a->synthetic_ticks = std::stoull(val());
    else if (k == "--help" || k == "-h") {
      Usage(stdout);
      std::exit(0);
    } else {
      std::fprintf(stderr, "ftsync_workload_eval: unknown option %s\n", k.c_str());
      Usage(stderr);
      return false;
    }
  }
  return true;
}

using ftsync::bench::UtcNow;
using ftsync::bench::WriteFile;

// Follows a growing file (the guest's console).
class SerialWatch {
 public:
  explicit SerialWatch(std::string path) : path_(std::move(path)) {}
  // Reads what was appended; returns everything seen so far.
  const std::string& Poll() {
    std::ifstream f(path_, std::ios::binary);
    if (f) {
      f.seekg(static_cast<std::streamoff>(text_.size()));
      std::stringstream s;
      s << f.rdbuf();
      text_ += s.str();
    }
    return text_;
  }
  bool Has(const std::string& needle) { return Poll().find(needle) != std::string::npos; }
  const std::string& text() const { return text_; }

 private:
  std::string path_;
  std::string text_;
};

std::vector<SpecPolicyFactory> Policies(const std::vector<std::string>& names, bool synthetic,
                                        std::string* error) {
  std::vector<SpecPolicyFactory> all = LibraryPolicies();
  if (synthetic) all.push_back(TestOnlyPolicy());
  std::vector<SpecPolicyFactory> out;
  for (const std::string& n : names) {
    if (n == "none") return {};
    if (n == "all") return all;
    bool found = false;
    for (const auto& f : all)
      if (f.name == n) out.push_back(f), found = true;
    if (!found) {
      *error = "unknown speculation policy " + n;
      return {};
    }
  }
  return out;
}

void Finish(const Args& a, Engine& engine, nlohmann::json run) {
  nlohmann::json j;
  j["workload"] = a.workload;
  j["description"] = a.description;
  j["generated_utc"] = UtcNow();
  j["run"] = std::move(run);
  j["run"]["ticks"] = engine.ticks();
  j["run"]["guest_s"] = engine.guest_ms() / 1e3;
  j["run"]["tick_ms"] = a.engine.tick_ms;
  j["run"]["shadow_budget_bytes"] = a.engine.shadow_budget;
  j["run"]["verify_every"] = a.engine.verify_every;
  j["run"]["verify_checked"] = engine.verify_checked();
  j["run"]["verify_failures"] = engine.verify_failures();
  j["run"]["evaluator_cpu_s"] = engine.eval_cpu_s();
  j["horizons"] = engine.Summary();
  if (!a.json_path.empty() && !WriteFile(a.json_path, j.dump(1) + "\n"))
    std::fprintf(stderr, "ftsync_workload_eval: cannot write %s\n", a.json_path.c_str());
  if (!a.series_path.empty()) {
    nlohmann::json s;
    s["workload"] = a.workload;
    s["tick_ms"] = a.engine.tick_ms;
    s["horizons"] = engine.Series();
    if (!WriteFile(a.series_path, s.dump() + "\n"))
      std::fprintf(stderr, "ftsync_workload_eval: cannot write %s\n", a.series_path.c_str());
  }
}

// ---- synthetic: a generated write stream, no QEMU --------------------------

int RunSynthetic(Args& a) {
  if (a.workload.empty()) a.workload = "synthetic";
  a.description = "generated writes (self-check of the evaluator)";
  const uint64_t frames = (a.ram_mb == 512 ? 64 : a.ram_mb) * 256;  // 64 MiB by default
  std::vector<uint8_t> ram(frames * kPage);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < ram.size(); i += 8) {
    uint64_t v = (i / kPage) % 3 == 0 ? 0 : rng();
    std::memcpy(&ram[i], &v, 8);
  }
  auto e = Engine::Create(a.engine, frames, ram.data());
  if (!e.ok()) {
    std::fprintf(stderr, "ftsync_workload_eval: %s\n", e.status().ToString().c_str());
    return 1;
  }
  Engine& engine = *e.value();
  engine.Start();
  // Hot pages (written every tick, a few bytes), warm ones (now and then,
  // small runs) and a streaming region (whole pages once).
  const uint64_t hot = frames / 64, warm = frames / 4;
  uint64_t stream = frames / 2;
  for (uint64_t t = 0; t < a.synthetic_ticks; ++t) {
    std::vector<uint64_t> written;
    auto touch = [&](uint64_t p, size_t off, size_t len) {
      for (size_t i = 0; i < len && off + i < kPage; ++i) ram[p * kPage + off + i] ^= static_cast<uint8_t>(1 + rng() % 255);
      written.push_back(p);
    };
    for (uint64_t k = 0; k < 16; ++k) touch(rng() % hot, rng() % kPage, 1 + rng() % 8);
    for (uint64_t k = 0; k < 24; ++k) touch(hot + rng() % warm, rng() % kPage, 1 + rng() % 200);
    if (t % 5 == 0) {
      touch(stream, 0, kPage);
      stream = stream + 1 < frames ? stream + 1 : frames / 2;
    }
    std::sort(written.begin(), written.end());
    written.erase(std::unique(written.begin(), written.end()), written.end());
    engine.OnTick(written, a.engine.tick_ms);
  }
  nlohmann::json run;
  run["synthetic"] = true;
  Finish(a, engine, run);
  // Self-check: every decoding rebuilt the page; the baseline's bytes are
  // exactly its pages; deltas beat it; speculation spared some pages.
  int bad = 0;
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "synthetic check FAILED: %s\n", why.c_str());
    ++bad;
  };
  if (engine.verify_failures() != 0) fail(std::to_string(engine.verify_failures()) + " decoding mismatches");
  if (engine.verify_checked() == 0) fail("nothing was checked");
  for (const auto& h : engine.Summary()) {
    double base = 0;
    for (const auto& c : h["configs"]) {
      const std::string n = c["config"];
      const double end = c["end_bytes_per_epoch"]["mean"];
      if (n == "remus") {
        base = end;
        const double pages = h["dirty_pages_per_epoch"]["mean"];
        if (std::fabs(end - pages * (kPfnBytes + kPage)) > 1e-6 * end)
          fail("remus bytes " + std::to_string(end) + " != dirty pages x 4104");
      } else if ((n == "runs" || n == "blocks-64" || n == "xbzrle") && !(end < base / 4)) {
        fail(n + " at " + std::to_string(int(h["epoch_ms"])) + " ms is not 4x below the baseline");
      }
      if (c["speculative"] && !(c["spec_pages_per_epoch"].get<double>() > 0)) fail(n + " sent nothing early");
    }
  }
  // The library's eager policy through the adapter must act exactly as the
  // test driver that sends every page written in the tick.
  for (const auto& h : engine.Summary()) {
    std::map<std::string, std::pair<double, double>> bytes;  // end, speculative
    for (const auto& c : h["configs"])
      bytes[c["config"]] = {c["end_bytes_per_epoch"]["mean"].get<double>(), c["spec_bytes_per_epoch"].get<double>()};
    for (const char* suffix : {"", "+runs"}) {
      auto x = bytes.find(std::string("spec-eager") + suffix), y = bytes.find(std::string("spec-test-eager") + suffix);
      if (x != bytes.end() && y != bytes.end() && x->second != y->second) fail(std::string("spec-eager") + suffix + " differs from the test driver");
    }
  }
  std::printf("synthetic: %llu ticks, %llu pages checked, %s\n",
              static_cast<unsigned long long>(engine.ticks()),
              static_cast<unsigned long long>(engine.verify_checked()), bad ? "FAILED" : "all checks passed");
  return bad ? 1 : 0;
}

// ---- the real thing ------------------------------------------------------

int RunQemu(Args& a) {
  const std::string kernel = a.image_dir + "/vmlinuz";
  const std::string initrd = a.image_dir + "/initrd.gz";
  const std::string disk = a.image_dir + "/" + a.workload + "/root.img";
  for (const std::string& f : {kernel, initrd, disk}) {
    if (access(f.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "ftsync_workload_eval: %s missing (run bench/workloads/lib/build-image.sh)\n",
                   f.c_str());
      return 1;
    }
  }
  char tmpl[] = "/dev/shm/ftsync-wl-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string dir = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};

  QemuLaunch l;
  l.machine = "pc-q35-7.2";
  l.ram_bytes = a.ram_mb << 20;
  l.ram_path = dir + "/ram";
  l.qmp_socket = dir + "/qmp.sock";
  l.preload_library = (a.build.empty() ? std::string("build") : a.build) + "/lib/libftsync_qemu_preload.so";
  l.log_path = dir + "/qemu.log";
  l.kill_with_parent = true;
  l.start_timeout_ms = 60000;
  const std::string serial = dir + "/serial.txt";
  l.extra_args = {"-accel", "tcg", "-smp", "1",
                  "-machine", "vmport=off,sata=off,smbus=off,i8042=off,usb=off",
                  "-serial", "file:" + serial, "-no-reboot",
                  "-kernel", kernel, "-initrd", initrd,
                  "-append", "console=ttyS0 quiet panic=-1 nokaslr",
                  "-drive", "file=" + disk + ",if=virtio,format=raw,cache=unsafe,snapshot=on"};
  const double t_launch = NowMs();
  auto proc = QemuProcess::Launch(l);
  if (!proc.ok()) {
    std::fprintf(stderr, "ftsync_workload_eval: QEMU: %s\n", proc.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<QemuProcess> process = std::move(proc).value();
  auto dom = QemuDomain::Attach(process.get());
  if (!dom.ok()) {
    std::fprintf(stderr, "ftsync_workload_eval: attach: %s\n", dom.status().ToString().c_str());
    return 1;
  }
  std::unique_ptr<QemuDomain> domain = std::move(dom).value();
  SerialWatch watch(serial);
  auto keep_serial = [&] {
    if (!a.serial_copy.empty()) WriteFile(a.serial_copy, watch.Poll());
  };

  std::fprintf(stderr, "%s: booting (QEMU pid %d, %llu MiB, TCG)\n", a.workload.c_str(), process->pid(),
               static_cast<unsigned long long>(a.ram_mb));
  while (!watch.Has("FTSYNC-WL-LOAD-START")) {
    if (g_interrupted || process->Exited() || watch.Has("FTSYNC-WL-FAIL") ||
        NowMs() - t_launch > a.boot_timeout_s * 1e3) {
      keep_serial();
      const std::string& t = watch.text();
      std::fprintf(stderr, "ftsync_workload_eval: the load did not start (%s); console tail:\n%s\n",
                   process->Exited() ? "QEMU exited" : "timeout or failure",
                   t.substr(t.size() > 3000 ? t.size() - 3000 : 0).c_str());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double boot_s = (NowMs() - t_launch) / 1e3;
  std::fprintf(stderr, "%s: load started after %.1f s (wall); evaluating\n", a.workload.c_str(), boot_s);

  int fd = open(l.ram_path.c_str(), O_RDONLY | O_CLOEXEC);
  void* map = fd < 0 ? MAP_FAILED : mmap(nullptr, l.ram_bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (fd >= 0) close(fd);
  if (map == MAP_FAILED) {
    std::perror("mapping the guest RAM");
    return 1;
  }
  const uint8_t* ram = static_cast<const uint8_t*>(map);

  // The guest's own clock: jiffies_64 (its address from the console, the
  // tick rate from the image cache). Used to hold ticks to tick_ms of guest
  // time and to report guest time; without it the host's estimate is used.
  uint64_t jiffies_off = 0;
  double hz = 0;
  {
    std::ifstream hf(a.image_dir + "/kernel-hz");
    hf >> hz;
    const std::string& t = watch.text();
    size_t at = t.find("FTSYNC-WL-JIFFIES ");
    if (at != std::string::npos && hz > 0) {
      uint64_t virt = std::strtoull(t.c_str() + at + 18, nullptr, 16);
      const uint64_t kmap = 0xffffffff80000000ull;
      if (virt > kmap && virt - kmap + 8 <= l.ram_bytes) jiffies_off = virt - kmap;
    }
    if (!jiffies_off)
      std::fprintf(stderr, "%s: warning: no guest clock (jiffies_64); guest time is the host's estimate\n",
                   a.workload.c_str());
  }
  auto jiffies = [&]() -> uint64_t {
    uint64_t v;
    std::memcpy(&v, ram + jiffies_off, 8);
    return v;
  };

  auto check = [&](const Status& s, const char* what) {
    if (!s.ok()) {
      std::fprintf(stderr, "ftsync_workload_eval: %s: %s\n", what, s.ToString().c_str());
      keep_serial();
      std::exit(1);
    }
  };
  check(domain->Suspend(), "stop");
  check(domain->EnableDirtyLog(), "enable dirty log");
  auto eng = Engine::Create(a.engine, domain->FrameCount(), ram);
  if (!eng.ok()) {
    std::fprintf(stderr, "ftsync_workload_eval: %s\n", eng.status().ToString().c_str());
    return 1;
  }
  Engine& engine = *eng.value();
  const double t_start = NowMs();
  engine.Start();
  std::fprintf(stderr, "%s: epoch 0 (every page through every configuration) took %.1f s\n",
               a.workload.c_str(), (NowMs() - t_start) / 1e3);

  DirtyBitmap bm;
  std::vector<uint64_t> written;
  const double t_eval = NowMs();
  double cont_ms = 0, save_ms_sum = 0, stop_ms_avg = 1.0;
  // Host milliseconds of run per guest millisecond, learned from jiffies.
  double scale = 1.0, host_run_sum = 0;
  const uint64_t j0 = jiffies_off ? jiffies() : 0;
  bool clock_ok = jiffies_off != 0;
  double guest_clock_ms = 0;
  double w_qmp = 0, w_harvest = 0, w_engine = 0, w_run = 0;
  uint64_t saves = 0;
  bool ended = false;
  std::string end_reason = "max guest time";
  double next_report = 10e3;
  while (!g_interrupted) {
    double c0 = NowMs();
    check(domain->Resume(), "cont");
    double c1 = NowMs();
    cont_ms = c1 - c0;
    // Run one tick: the guest runs from about the middle of cont's round
    // trip to about the middle of stop's, so stop is issued half a (recent)
    // stop latency before the tick's nominal end. A sleep, then a spin.
    const double until = (c0 + c1) / 2 + a.engine.tick_ms * scale - stop_ms_avg / 2;
    const double sleep_ms = until - NowMs() - 1.0;
    if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(sleep_ms * 1e3)));
    while (NowMs() < until) {
    }
    double s0 = NowMs();
    Status st = domain->Suspend();
    double s1 = NowMs();
    stop_ms_avg = 0.9 * stop_ms_avg + 0.1 * (s1 - s0);
    if (!st.ok()) {
      if (process->Exited()) {
        end_reason = "guest powered off";
        break;
      }
      check(st, "stop");
    }
    const double host_run = (s0 + s1) / 2 - (c0 + c1) / 2;
    host_run_sum += host_run;
    if (clock_ok) {
      const double g = static_cast<double>(jiffies() - j0) * 1000.0 / hz;
      guest_clock_ms = g;
      if (host_run_sum > 2000 && (g < host_run_sum * 0.2 || g > host_run_sum * 5)) {
        std::fprintf(stderr, "%s: warning: the guest clock at 0x%llx is implausible (%.0f ms guest for %.0f ms run); using the host's estimate\n",
                     a.workload.c_str(), static_cast<unsigned long long>(jiffies_off), g, host_run_sum);
        clock_ok = false;
        scale = 1.0;
      } else if (g >= 200) {
        scale = std::clamp(host_run_sum / g, 0.3, 3.0);
      }
    }
    const double run_ms = host_run / scale;
    check(domain->FetchAndClearDirty(&bm), "harvest");
    double f1 = NowMs();
    written.clear();
    bm.AppendSetBits(&written);
    std::vector<EpochEnd> ends = engine.OnTick(written, run_ms);
    w_engine += NowMs() - f1;
    w_qmp += (c1 - c0) + (s1 - s0);
    w_harvest += f1 - s1;
    w_run += s0 - c1;
    if (!ends.empty()) {
      double save_ms = 0;
      if (a.save_state) {
        double v0 = NowMs();
        auto state = domain->SaveState();
        check(state.status(), "device state save");
        save_ms = NowMs() - v0;
        save_ms_sum += save_ms;
        ++saves;
      }
      for (const EpochEnd& e : ends)
        engine.RecordPause(e.epoch_ms, (s1 - s0) + (f1 - s1) + e.copy_ms + save_ms + cont_ms, e.copy_ms, e.pages);
    }
    if (engine.guest_ms() >= next_report) {
      std::fprintf(stderr, "%s: %.0f s guest time, %.0f s wall, %llu ticks\n", a.workload.c_str(),
                   engine.guest_ms() / 1e3, (NowMs() - t_eval) / 1e3,
                   static_cast<unsigned long long>(engine.ticks()));
      next_report += 10e3;
    }
    if (engine.ticks() % 20 == 0 && watch.Has("FTSYNC-WL-LOAD-END")) {
      ended = true;
      end_reason = "load ended";
      break;
    }
    if (engine.guest_ms() >= a.max_guest_s * 1e3) break;
  }
  const double eval_wall_s = (NowMs() - t_eval) / 1e3;
  if (!ended && !process->Exited()) {
    // Let the load finish (its summary lines) unless we stopped on time.
    (void)domain->Resume();
    for (int i = 0; i < 100 && !watch.Has("FTSYNC-WL-LOAD-END") && !process->Exited(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  keep_serial();
  (void)domain->DisableDirtyLog();
  domain.reset();
  process.reset();  // kills QEMU
  munmap(map, l.ram_bytes);

  nlohmann::json run;
  run["boot_wall_s"] = boot_s;
  run["epoch0_wall_s"] = (t_eval - t_start) / 1e3;
  run["eval_wall_s"] = eval_wall_s;
  run["end_reason"] = end_reason;
  run["ram_mb"] = a.ram_mb;
  run["device_state_save_ms_mean"] = saves ? save_ms_sum / saves : 0;
  run["guest_clock"] = clock_ok ? "jiffies" : "host estimate";
  if (clock_ok) run["guest_s_jiffies"] = guest_clock_ms / 1e3;
  run["host_ms_per_guest_ms"] = scale;
  run["tick_run_ms_mean"] = engine.ticks() ? engine.guest_ms() / static_cast<double>(engine.ticks()) : 0.0;
  run["wall_s"] = {{"guest_running", w_run / 1e3}, {"qmp_stop_cont", w_qmp / 1e3},
                   {"harvest", w_harvest / 1e3}, {"evaluation", w_engine / 1e3},
                   {"device_state_save", save_ms_sum / 1e3}};
  run["qemu"] = "qemu-system-x86_64 pc-q35-7.2, TCG, 1 vCPU";
  // The load's own report (pgbench's tps, dbench's throughput, ...).
  std::vector<std::string> lines;
  std::stringstream ss(watch.text());
  for (std::string line; std::getline(ss, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.rfind("wl-load: ", 0) == 0 || line.rfind("ftsync-wl-init: ", 0) == 0 ||
        line.rfind("FTSYNC-WL-", 0) == 0)
      lines.push_back(line);
  }
  run["guest_log"] = lines;
  Finish(a, engine, run);
  std::fprintf(stderr, "%s: %s after %.1f s guest time (%.0f s wall); %llu pages checked, %llu failures\n",
               a.workload.c_str(), end_reason.c_str(), engine.guest_ms() / 1e3, eval_wall_s,
               static_cast<unsigned long long>(engine.verify_checked()),
               static_cast<unsigned long long>(engine.verify_failures()));
  return engine.verify_failures() ? 1 : 0;
}

}  // namespace
}  // namespace ftsync::wl

int main(int argc, char** argv) {
  using namespace ftsync::wl;
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
  Args a;
  if (!ParseArgs(argc, argv, &a)) return 2;
  std::string err;
  a.engine.spec_policies = Policies(a.policies, a.synthetic, &err);
  if (!err.empty()) {
    std::fprintf(stderr, "ftsync_workload_eval: %s\n", err.c_str());
    return 2;
  }
  if (a.synthetic) {
    a.engine.shadow_budget = (a.shadow_mb ? a.shadow_mb : 64) << 20;
    return RunSynthetic(a);
  }
  a.engine.shadow_budget = (a.shadow_mb ? a.shadow_mb : a.ram_mb / 4) << 20;
  if (a.workload.empty() || a.image_dir.empty()) {
    Usage(stderr);
    return 2;
  }
  return RunQemu(a);
}
