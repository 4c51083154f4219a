// Section 4: the Linux dirty tracker (userfaultfd write-protect in async
// mode + PAGEMAP_SCAN), as a replication process would use it on a guest's
// RAM mapping.
//
// A populated anonymous mapping is registered with UffdWpRegistration; each
// repetition writes one byte to a given share of its pages (distinct,
// random), then FetchAndClear is timed. The baselines are what a tracker
// without kernel help would do on the same memory: hash every page with
// XXH3-64 and compare to the previous hashes, or memcmp every page against
// a shadow copy. All figures are milliseconds per GiB of tracked memory.
#include <sys/mman.h>
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

Json Skipped(const std::string& reason) {
  PrintNote("skipped: " + reason);
  Json out = Json::Object();
  out.Set("skipped", true).Set("reason", reason);
  return out;
}

}  // namespace

Json RunTrackerBench(const BenchConfig& config) {
  PrintSection("4. Linux dirty tracker: PagemapDirtyTracker::FetchAndClear (uffd-wp async + PAGEMAP_SCAN)");
  Status probe = ProbeUffdWpAsync();
  if (!probe.ok()) return Skipped("ProbeUffdWpAsync: " + probe.ToString());

  const size_t len = config.quick ? (size_t{128} << 20) : (size_t{1} << 30);
  const uint64_t pages = len / kPageSize;
  const double per_gib = kGiB / static_cast<double>(len);  // seconds -> seconds per GiB
  PageBuffer region(len, 0x33);
  uint8_t* base = region.data();

  std::unique_ptr<UffdWpRegistration> reg;
  double register_s = TimeOnce([&] {
    Result<std::unique_ptr<UffdWpRegistration>> r = UffdWpRegistration::Register(base, len);
    if (r.ok()) reg = std::move(r).value();
    else probe = r.status();
  });
  if (!reg) return Skipped("UffdWpRegistration::Register: " + probe.ToString());
  Result<std::unique_ptr<PagemapDirtyTracker>> tracker =
      PagemapDirtyTracker::Open(0, reinterpret_cast<uint64_t>(base), len);
  if (!tracker.ok()) return Skipped("PagemapDirtyTracker::Open: " + tracker.status().ToString());
  DirtyBitmap bitmap;
  if (Status s = (*tracker)->FetchAndClear(&bitmap); !s.ok())
    return Skipped("FetchAndClear: " + s.ToString());
  PrintNote("anonymous mapping of " + std::to_string(len >> 20) + " MiB (" + std::to_string(pages) +
            " pages), populated, registered in " + Fixed(register_s * 1e3, 1) + " ms; median of " +
            std::to_string(config.reps) + " runs");

  // Baselines on the same memory.
  std::vector<uint64_t> hashes(pages);
  std::vector<double> hash = TimeRepeated(config.reps, [&] {
    uint64_t changed = 0;
    for (uint64_t i = 0; i < pages; ++i) {
      uint64_t h = XXH3_64bits(base + i * kPageSize, kPageSize);
      changed += h != hashes[i];
      hashes[i] = h;
    }
    DoNotOptimize(changed);
  });
  PageBuffer shadow(len);
  std::memcpy(shadow.data(), base, len);
  std::vector<double> compare = TimeRepeated(config.reps, [&] {
    uint64_t changed = 0;
    for (uint64_t i = 0; i < pages; ++i)
      changed += std::memcmp(base + i * kPageSize, shadow.data() + i * kPageSize, kPageSize) != 0;
    DoNotOptimize(changed);
  });
  const double hash_ms = Median(hash) * per_gib * 1e3;
  const double memcmp_ms = Median(compare) * per_gib * 1e3;

  Table table({"written", "pages written", "FetchAndClear ms/GiB", "vs XXH3 all pages",
               "vs memcmp shadow", "reported pages", "write fault us/page"});
  table.AddRow({"baseline: XXH3_64bits of every page", "-", Fixed(hash_ms, 2), Ratio(1), "-", "-", "-"});
  table.AddRow({"baseline: memcmp every page vs shadow", "-", Fixed(memcmp_ms, 2), "-", Ratio(1), "-", "-"});
  Json cases = Json::Array();
  Rng rng(config.seed);
  std::vector<uint64_t> scratch;
  bool exact = true;
  Status failure;
  for (double percent : {0.0, 1.0, 10.0}) {
    const uint64_t count = static_cast<uint64_t>(static_cast<double>(pages) * percent / 100.0);
    std::vector<double> scan, write_us;
    uint64_t reported = 0;
    for (int r = 0; r <= config.reps && failure.ok(); ++r) {
      std::vector<uint64_t> chosen = DistinctRandom(&rng, count, pages, &scratch);
      double w = TimeOnce([&] {
        for (uint64_t p : chosen) *reinterpret_cast<volatile uint8_t*>(base + p * kPageSize) = uint8_t(r + 1);
      });
      double t = TimeOnce([&] { failure = (*tracker)->FetchAndClear(&bitmap); });
      reported = bitmap.Count();
      for (uint64_t p : chosen) exact &= bitmap.Test(p);  // never misses a written page
      if (r == 0) continue;  // warm-up
      scan.push_back(t);
      if (count > 0) write_us.push_back(w * 1e6 / static_cast<double>(count));
    }
    if (!failure.ok()) break;
    const double ms = Median(scan) * per_gib * 1e3;
    table.AddRow({Fixed(percent, 0) + "% of pages", std::to_string(count), Fixed(ms, 2),
                  Ratio(ms / hash_ms), Ratio(ms / memcmp_ms), std::to_string(reported),
                  count ? Fixed(Median(write_us), 2) : "-"});
    Json c = Json::Object();
    c.Set("written_percent", percent)
        .Set("pages_written", count)
        .Set("fetch_and_clear_ms_per_gib", Round(ms, 3))
        .Set("ratio_vs_xxh3", Round(ms / hash_ms, 4))
        .Set("ratio_vs_memcmp", Round(ms / memcmp_ms, 4))
        .Set("reported_pages_last_run", reported)
        .Set("write_fault_us_per_page", count ? Json(Round(Median(write_us), 3)) : Json::Null());
    cases.Push(std::move(c));
  }
  table.Print();
  PrintNote("ratio < 1: the kernel's tracker is cheaper than scanning memory in user space");
  if (!exact) PrintNote("ERROR: FetchAndClear missed a written page");
  if (!failure.ok()) PrintNote("ERROR: " + failure.ToString());

  Json out = Json::Object();
  out.Set("skipped", false)
      .Set("bytes", static_cast<uint64_t>(len))
      .Set("pages", pages)
      .Set("reps", config.reps)
      .Set("register_ms", Round(register_s * 1e3, 3))
      .Set("xxh3_all_pages_ms_per_gib", Round(hash_ms, 3))
      .Set("memcmp_shadow_ms_per_gib", Round(memcmp_ms, 3))
      .Set("never_missed", exact)
      .Set("ok", failure.ok())
      .Set("cases", std::move(cases));
  if (!failure.ok()) out.Set("error", failure.ToString());
  return out;
}

}  // namespace ftsync::bench
