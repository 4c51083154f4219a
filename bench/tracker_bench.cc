// Section 4: the Linux dirty tracker (userfaultfd write-protect in async
// mode + PAGEMAP_SCAN), as a replication process would use it on a guest's
// RAM mapping.
//
// A populated mapping is registered with UffdWpRegistration; each
// repetition writes one byte to a given share of its pages (distinct,
// random), then FetchAndClear is timed. Two mapping kinds: anonymous
// private memory, and a memfd mapped shared (QEMU's
// memory-backend-memfd,share=on guest RAM). The baselines are what a
// tracker without kernel help would do on the same amount of memory: hash
// every page with XXH3-64 and compare with the previous hashes, or memcmp
// every page against a shadow copy. Figures are milliseconds per GiB of
// tracked memory.
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <string>
#include <vector>

#include "benchmarks.h"
#include "ftsync/dirty_bitmap.h"
#include "ftsync/linux_dirty_tracker.h"
#include "timing.h"

namespace ftsync::bench {
namespace {

constexpr double kGiB = 1024.0 * 1024 * 1024;

// A populated mapping of one of the two kinds, unmapped on destruction.
class TrackedMemory {
 public:
  TrackedMemory(bool shared, size_t len) : len_(len) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
    int fd = -1;
    if (shared) {
      fd = memfd_create("ftsync-bench", MFD_CLOEXEC);
      if (fd < 0 || ftruncate(fd, static_cast<off_t>(len)) != 0) {
        error_ = std::string("memfd: ") + std::strerror(errno);
        if (fd >= 0) close(fd);
        return;
      }
      flags = MAP_SHARED | MAP_POPULATE;
    }
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (fd >= 0) close(fd);  // the mapping keeps the memfd alive
    if (p == MAP_FAILED) {
      error_ = std::string("mmap: ") + std::strerror(errno);
      return;
    }
    addr_ = static_cast<uint8_t*>(p);
    std::memset(addr_, 0x33, len);
  }
  ~TrackedMemory() {
    if (addr_) munmap(addr_, len_);
  }
  uint8_t* addr() const { return addr_; }
  const std::string& error() const { return error_; }

 private:
  uint8_t* addr_ = nullptr;
  size_t len_;
  std::string error_;
};

struct Row {
  double percent;
  uint64_t written;
  double ms_per_gib;
  uint64_t reported;
  double write_us;  // per written page; 0 when none
};

// Registers `mem`, then times FetchAndClear at 0%, 1% and 10% written.
// Returns false (with *why) when the tracker cannot run on this mapping.
bool MeasureMapping(const BenchConfig& config, uint8_t* base, size_t len, double* register_ms,
                    std::vector<Row>* rows, bool* never_missed, std::string* why) {
  const uint64_t pages = len / kPageSize;
  const double per_gib = kGiB / static_cast<double>(len);
  std::unique_ptr<UffdWpRegistration> reg;
  Status st;
  *register_ms = TimeOnce([&] {
    Result<std::unique_ptr<UffdWpRegistration>> r = UffdWpRegistration::Register(base, len);
    if (r.ok()) reg = std::move(r).value();
    else st = r.status();
  }) * 1e3;
  if (!reg) {
    *why = "UffdWpRegistration::Register: " + st.ToString();
    return false;
  }
  Result<std::unique_ptr<PagemapDirtyTracker>> tracker =
      PagemapDirtyTracker::Open(0, reinterpret_cast<uint64_t>(base), len);
  if (!tracker.ok()) {
    *why = "PagemapDirtyTracker::Open: " + tracker.status().ToString();
    return false;
  }
  DirtyBitmap bitmap;
  Rng rng(config.seed);
  std::vector<uint64_t> scratch;
  for (double percent : {0.0, 1.0, 10.0}) {
    const uint64_t count = static_cast<uint64_t>(static_cast<double>(pages) * percent / 100.0);
    std::vector<double> scan, write_us;
    uint64_t reported = 0;
    // Run 0 is the warm-up (and clears what registration left).
    for (int r = 0; r <= config.reps; ++r) {
      std::vector<uint64_t> chosen = DistinctRandom(&rng, count, pages, &scratch);
      double w = TimeOnce([&] {
        for (uint64_t p : chosen) *reinterpret_cast<volatile uint8_t*>(base + p * kPageSize) = uint8_t(r + 1);
      });
      double t = TimeOnce([&] { st = (*tracker)->FetchAndClear(&bitmap); });
      if (!st.ok()) {
        *why = "FetchAndClear: " + st.ToString();
        return false;
      }
      reported = bitmap.Count();
      for (uint64_t p : chosen) *never_missed &= bitmap.Test(p);
      if (r == 0) continue;
      scan.push_back(t);
      if (count > 0) write_us.push_back(w * 1e6 / static_cast<double>(count));
    }
    rows->push_back({percent, count, Median(scan) * per_gib * 1e3, reported,
                     count ? Median(write_us) : 0});
  }
  return true;
}

}  // namespace

Json RunTrackerBench(const BenchConfig& config) {
  PrintSection("4. Linux dirty tracker: PagemapDirtyTracker::FetchAndClear (uffd-wp async + PAGEMAP_SCAN)");
  Json out = Json::Object();
  Status probe = ProbeUffdWpAsync();
  if (!probe.ok()) {
    PrintNote("skipped: ProbeUffdWpAsync: " + probe.ToString());
    out.Set("skipped", true).Set("reason", "ProbeUffdWpAsync: " + probe.ToString());
    return out;
  }
  const size_t len = config.quick ? (size_t{128} << 20) : (size_t{1} << 30);
  const uint64_t pages = len / kPageSize;
  const double per_gib = kGiB / static_cast<double>(len);
  PrintNote(std::to_string(len >> 20) + " MiB (" + std::to_string(pages) +
            " pages) per mapping, populated before registration; median of " +
            std::to_string(config.reps) + " runs; ms are scaled to 1 GiB");

  // Baselines: scanning the memory from user space.
  double hash_ms = 0, memcmp_ms = 0;
  {
    PageBuffer memory(len, 0x33);
    std::vector<uint64_t> hashes(pages);
    hash_ms = Median(TimeRepeated(config.reps, [&] {
                uint64_t changed = 0;
                for (uint64_t i = 0; i < pages; ++i) {
                  uint64_t h = XXH3_64bits(memory.data() + i * kPageSize, kPageSize);
                  changed += h != hashes[i];
                  hashes[i] = h;
                }
                DoNotOptimize(changed);
              })) * per_gib * 1e3;
    PageBuffer shadow(len, 0x33);
    memcmp_ms = Median(TimeRepeated(config.reps, [&] {
                  uint64_t changed = 0;
                  for (uint64_t i = 0; i < pages; ++i)
                    changed += std::memcmp(memory.data() + i * kPageSize,
                                           shadow.data() + i * kPageSize, kPageSize) != 0;
                  DoNotOptimize(changed);
                })) * per_gib * 1e3;
  }

  Table table({"mapping", "written", "pages", "FetchAndClear ms/GiB", "vs XXH3 all pages",
               "vs memcmp shadow", "reported", "write fault us/page"});
  table.AddRow({"baseline: XXH3_64bits of every page", "-", "-", Fixed(hash_ms, 2), Ratio(1), "-", "-", "-"});
  table.AddRow({"baseline: memcmp every page vs shadow", "-", "-", Fixed(memcmp_ms, 2), "-", Ratio(1), "-", "-"});
  Json mappings = Json::Array();
  bool all_ok = true, never_missed = true;
  for (bool shared : {false, true}) {
    const char* kind = shared ? "memfd, MAP_SHARED" : "anonymous, MAP_PRIVATE";
    Json m = Json::Object();
    m.Set("mapping", shared ? "memfd_shared" : "anonymous");
    TrackedMemory mem(shared, len);
    std::vector<Row> rows;
    double register_ms = 0;
    std::string why = mem.error();
    if (why.empty() && !MeasureMapping(config, mem.addr(), len, &register_ms, &rows, &never_missed, &why)) {
      all_ok = false;
    }
    if (!why.empty()) {
      table.AddRow({kind, "failed: " + why});
      m.Set("ok", false).Set("error", why);
      mappings.Push(std::move(m));
      continue;
    }
    Json cases = Json::Array();
    for (const Row& r : rows) {
      table.AddRow({kind, Fixed(r.percent, 0) + "%", std::to_string(r.written), Fixed(r.ms_per_gib, 2),
                    Ratio(r.ms_per_gib / hash_ms), Ratio(r.ms_per_gib / memcmp_ms),
                    std::to_string(r.reported), r.written ? Fixed(r.write_us, 2) : "-"});
      Json c = Json::Object();
      c.Set("written_percent", r.percent)
          .Set("pages_written", r.written)
          .Set("fetch_and_clear_ms_per_gib", Round(r.ms_per_gib, 3))
          .Set("ratio_vs_xxh3", Round(r.ms_per_gib / hash_ms, 4))
          .Set("ratio_vs_memcmp", Round(r.ms_per_gib / memcmp_ms, 4))
          .Set("reported_pages_last_run", r.reported)
          .Set("write_fault_us_per_page", r.written ? Json(Round(r.write_us, 3)) : Json::Null());
      cases.Push(std::move(c));
    }
    m.Set("ok", true).Set("register_ms", Round(register_ms, 3)).Set("cases", std::move(cases));
    mappings.Push(std::move(m));
  }
  table.Print();
  PrintNote("ratio < 1: the kernel's tracker costs less than scanning the memory from user space;");
  PrintNote("'reported' = pages FetchAndClear returned in the last run (exact: equals 'pages')");
  if (!never_missed) PrintNote("ERROR: FetchAndClear missed a written page");

  out.Set("skipped", false)
      .Set("bytes_per_mapping", static_cast<uint64_t>(len))
      .Set("pages_per_mapping", pages)
      .Set("reps", config.reps)
      .Set("xxh3_all_pages_ms_per_gib", Round(hash_ms, 3))
      .Set("memcmp_shadow_ms_per_gib", Round(memcmp_ms, 3))
      .Set("never_missed", never_missed)
      .Set("ok", all_ok)
      .Set("mappings", std::move(mappings));
  return out;
}

}  // namespace ftsync::bench
