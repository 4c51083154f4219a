// Tests of the userfaultfd write-protect / PAGEMAP_SCAN dirty tracker on
// the running kernel. Each test skips (with a warning naming the reason)
// when the kernel lacks the features.
#include "ftsync/linux_dirty_tracker.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace ftsync {
namespace {

#define SKIP_UNLESS_UFFD_WP_ASYNC()                        \
  do {                                                     \
    Status probe_status = ProbeUffdWpAsync();              \
    if (!probe_status.ok()) {                              \
      WARN("skipping: " + probe_status.ToString());        \
      return;                                              \
    }                                                      \
  } while (0)

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

enum class Kind { kAnon, kMemfd, kShm };

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kAnon: return "anonymous";
    case Kind::kMemfd: return "memfd MAP_SHARED";
    case Kind::kShm: return "/dev/shm MAP_SHARED";
  }
  return "?";
}

// A file descriptor of a shared-memory file of `len` bytes, or -1.
int MakeSharedFile(Kind kind, size_t len) {
  int fd = -1;
  if (kind == Kind::kMemfd) {
    fd = memfd_create("ftsync-tracker-test", MFD_CLOEXEC);
  } else {
    static std::atomic<int> counter{0};
    std::string path = "/dev/shm/ftsync-tracker-test-" +
                       std::to_string(getpid()) + "-" +
                       std::to_string(counter++);
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) unlink(path.c_str());
  }
  if (fd >= 0 && ftruncate(fd, static_cast<off_t>(len)) != 0) {
    close(fd);
    fd = -1;
  }
  return fd;
}

// One mapping of `len` bytes, unmapped on destruction.
class Mapping {
 public:
  Mapping(Kind kind, size_t len, bool populate) : len_(len) {
    if (kind == Kind::kAnon) {
      addr_ = mmap(nullptr, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    } else {
      fd_ = MakeSharedFile(kind, len);
      if (fd_ >= 0) {
        addr_ = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
      }
    }
    if (addr_ == MAP_FAILED) addr_ = nullptr;
    if (addr_ != nullptr && populate) memset(addr_, 0x5a, len);
  }
  ~Mapping() {
    if (addr_ != nullptr) munmap(addr_, len_);
    if (fd_ >= 0) close(fd_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  uint64_t addr() const { return reinterpret_cast<uintptr_t>(addr_); }
  size_t len() const { return len_; }
  uint64_t pages() const { return len_ / kPage; }
  int fd() const { return fd_; }

 private:
  void* addr_ = nullptr;
  size_t len_;
  int fd_ = -1;
};

// `n` distinct random page indices below `pages`, ascending.
std::vector<uint64_t> RandomPages(std::mt19937_64& rng, uint64_t pages,
                                  uint64_t n) {
  std::set<uint64_t> s;
  std::uniform_int_distribution<uint64_t> dist(0, pages - 1);
  while (s.size() < n) s.insert(dist(rng));
  return {s.begin(), s.end()};
}

// Writes one random byte at a random offset of each listed page.
void WritePages(uint8_t* base, const std::vector<uint64_t>& pages,
                std::mt19937_64& rng) {
  volatile uint8_t* p = base;
  for (uint64_t i : pages) {
    p[i * kPage + rng() % kPage] = static_cast<uint8_t>(rng());
  }
}

void ReadPages(const uint8_t* base, const std::vector<uint64_t>& pages) {
  const volatile uint8_t* p = base;
  unsigned sum = 0;
  for (uint64_t i : pages) sum += p[i * kPage + 123];
  (void)sum;
}

DirtyBitmap BitmapOf(uint64_t size, const std::vector<uint64_t>& pages) {
  DirtyBitmap b(size);
  for (uint64_t p : pages) b.Set(p);
  return b;
}

std::vector<uint64_t> SetBits(const DirtyBitmap& b) {
  std::vector<uint64_t> v;
  b.AppendSetBits(&v);
  return v;
}

std::string FirstFew(const std::vector<uint64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 8; ++i) {
    s += (i ? "," : "") + std::to_string(v[i]);
  }
  if (v.size() > 8) s += ",...";
  return s;
}

// Pages in `want` but not in `got`.
std::vector<uint64_t> Missing(const DirtyBitmap& want, const DirtyBitmap& got) {
  std::vector<uint64_t> out;
  for (uint64_t p : SetBits(want)) {
    if (p >= got.size() || !got.Test(p)) out.push_back(p);
  }
  return out;
}

// Asserts got == want, naming the missed and extra pages on failure.
void CheckExact(const DirtyBitmap& got, const DirtyBitmap& want) {
  REQUIRE(got.size() == want.size());
  std::vector<uint64_t> missed = Missing(want, got);
  std::vector<uint64_t> extra = Missing(got, want);
  INFO("missed " << missed.size() << " [" << FirstFew(missed) << "], extra "
                 << extra.size() << " [" << FirstFew(extra) << "]");
  CHECK(missed.empty());
  CHECK(extra.empty());
  CHECK(got == want);
}

// Asserts want <= got (nothing missed).
void CheckNoneMissed(const DirtyBitmap& got, const DirtyBitmap& want) {
  REQUIRE(got.size() == want.size());
  std::vector<uint64_t> missed = Missing(want, got);
  INFO("missed " << missed.size() << " [" << FirstFew(missed) << "]");
  CHECK(missed.empty());
}

void CheckEmpty(PagemapDirtyTracker* t) {
  DirtyBitmap b;
  Status st = t->FetchAndClear(&b);
  REQUIRE(st.ok());
  INFO("unexpected pages [" << FirstFew(SetBits(b)) << "]");
  CHECK(b.Count() == 0);
}

TEST_CASE("ProbeUffdWpAsync says yes or names what is missing", "[linux]") {
  Status st = ProbeUffdWpAsync();
  if (!st.ok()) {
    CHECK(st.code() == Errc::kNotSupported);
    CHECK(st.context().find("6.7") != std::string::npos);
    WARN("skipping: " + st.ToString());
    return;
  }
  SUCCEED("kernel supports userfaultfd async write-protect + PAGEMAP_SCAN");
}

TEST_CASE("FetchAndClear, Peek and Rearm report exact page sets",
          "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const Kind kind = GENERATE(Kind::kAnon, Kind::kMemfd, Kind::kShm);
  INFO("mapping: " << KindName(kind));
  Mapping m(kind, 16 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  CHECK(reg.value()->addr() == m.data());
  CHECK(reg.value()->length() == m.len());
  CHECK(reg.value()->fd() >= 0);
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  REQUIRE(t->page_count() == m.pages());
  REQUIRE(t->page_size() == kPage);

  // Registration write-protected everything, including populated pages.
  CheckEmpty(t);

  std::mt19937_64 rng(0x5eed0000 + static_cast<int>(kind));
  for (int round = 0; round < 6; ++round) {
    INFO("round " << round);
    uint64_t n = 1 + rng() % 600;
    std::vector<uint64_t> pages = RandomPages(rng, m.pages(), n);
    if (round == 0) {  // the range's edges
      pages = {0, 1, m.pages() - 2, m.pages() - 1};
    }
    WritePages(m.data(), pages, rng);
    // Writing a page twice still reports it once.
    WritePages(m.data(), pages, rng);
    const DirtyBitmap want = BitmapOf(m.pages(), pages);

    DirtyBitmap got;
    REQUIRE(t->Peek(&got).ok());
    CheckExact(got, want);
    REQUIRE(t->Peek(&got).ok());  // Peek did not clear
    CheckExact(got, want);
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, want);
    CheckEmpty(t);
    REQUIRE(t->Peek(&got).ok());
    CHECK(got.Count() == 0);
  }

  SECTION("Rearm clears exactly the listed pages") {
    std::vector<uint64_t> pages = RandomPages(rng, m.pages(), 300);
    WritePages(m.data(), pages, rng);
    std::vector<uint64_t> rearmed, kept;
    for (size_t i = 0; i < pages.size(); ++i) {
      (i % 3 == 0 ? rearmed : kept).push_back(pages[i]);
    }
    // Include a run of consecutive pages and an untouched page.
    rearmed.insert(rearmed.end(), {m.pages() - 40, m.pages() - 39});
    WritePages(m.data(), {m.pages() - 40, m.pages() - 39}, rng);
    REQUIRE(t->Rearm(rearmed).ok());
    DirtyBitmap got;
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, BitmapOf(m.pages(), kept));

    // A rearmed page written again is reported again.
    WritePages(m.data(), {rearmed[0]}, rng);
    REQUIRE(t->Rearm(std::vector<uint64_t>{}).ok());
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, BitmapOf(m.pages(), {rearmed[0]}));
  }
}

TEST_CASE("Peek and Rearm: the speculative-send sequence", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const Kind kind = GENERATE(Kind::kAnon, Kind::kMemfd, Kind::kShm);
  INFO("mapping: " << KindName(kind));
  Mapping m(kind, 4 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  std::mt19937_64 rng(77);

  // Pages 10..13 are a run; 200 stands alone; 500 is written but kept.
  const std::vector<uint64_t> spec = {10, 11, 12, 13, 200};
  std::vector<uint64_t> all = spec;
  all.push_back(500);
  WritePages(m.data(), all, rng);
  DirtyBitmap got;
  // write -> peek sees it -> peek again still sees it.
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), all));
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), all));
  // rearm -> not seen, by Peek nor by FetchAndClear-to-be.
  REQUIRE(t->Rearm(spec).ok());
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), {500}));
  // Reading a re-armed page does not mark it.
  ReadPages(m.data(), spec);
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), {500}));
  // write -> seen again, by Peek and then by FetchAndClear.
  WritePages(m.data(), {12}, rng);
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), {12, 500}));
  // Re-arming a page twice, or one never written, is harmless.
  REQUIRE(t->Rearm(std::vector<uint64_t>{200, 200, 300}).ok());
  REQUIRE(t->FetchAndClear(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), {12, 500}));
  CheckEmpty(t);
  // After the epoch: a re-armed page written in the next epoch is seen.
  WritePages(m.data(), {10}, rng);
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), {10}));
  REQUIRE(t->FetchAndClear(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), {10}));
}

// The speculative send's guarantee under concurrency: re-arm, then copy.
// A page whose copy differs from its contents at the end must be reported
// by the final FetchAndClear (or the copy would be silently stale).
TEST_CASE("Rearm then copy: a write racing with a speculative copy is never lost",
          "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const Kind kind = GENERATE(Kind::kAnon, Kind::kMemfd);
  INFO("mapping: " << KindName(kind));
  Mapping m(kind, 8 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  // Epoch start: everything is copied (the full pass), log clear.
  std::vector<uint8_t> shadow(m.data(), m.data() + m.len());
  CheckEmpty(t);

  // The writer stores an ever-increasing sequence number into random words
  // of a hot set of 64 pages (mostly) and of the whole range.
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0};
  std::thread writer([&] {
    std::mt19937_64 rng(5);
    volatile uint64_t* w = reinterpret_cast<volatile uint64_t*>(m.data());
    const uint64_t words_per_page = kPage / 8;
    uint64_t seq = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t page = (rng() % 4 != 0) ? rng() % 64 : rng() % m.pages();
      w[page * words_per_page + rng() % words_per_page] = seq++;
      if ((seq & 1023) == 0) writes.store(seq, std::memory_order_relaxed);
    }
    writes.store(seq, std::memory_order_relaxed);
  });
  int ticks = 0;
  uint64_t copied = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  Status st;
  std::vector<uint64_t> pages;
  while (st.ok() && std::chrono::steady_clock::now() < deadline) {
    DirtyBitmap peek;
    st = t->Peek(&peek);
    if (!st.ok()) break;
    pages.clear();
    peek.AppendSetBits(&pages);
    st = t->Rearm(pages);  // first re-arm ...
    if (!st.ok()) break;
    for (uint64_t p : pages) {  // ... then copy
      std::memcpy(shadow.data() + p * kPage, m.data() + p * kPage, kPage);
    }
    copied += pages.size();
    ++ticks;
  }
  stop = true;
  writer.join();
  REQUIRE(st.ok());
  // One more tick with the writer stopped: its copies stay current, so the
  // check below that some copies survive does not depend on how fast the
  // writer ran (a loaded machine lets it rewrite every page in 300 ms).
  {
    DirtyBitmap peek;
    REQUIRE(t->Peek(&peek).ok());
    pages.clear();
    peek.AppendSetBits(&pages);
    REQUIRE(t->Rearm(pages).ok());
    for (uint64_t p : pages) std::memcpy(shadow.data() + p * kPage, m.data() + p * kPage, kPage);
    copied += pages.size();
  }
  DirtyBitmap final_dirty;
  REQUIRE(t->FetchAndClear(&final_dirty).ok());
  std::vector<uint64_t> stale;
  uint64_t unchanged_after_copy = 0;
  for (uint64_t p = 0; p < m.pages(); ++p) {
    bool same = std::memcmp(shadow.data() + p * kPage, m.data() + p * kPage, kPage) == 0;
    if (!same && !final_dirty.Test(p)) stale.push_back(p);
    if (same && !final_dirty.Test(p)) ++unchanged_after_copy;
  }
  INFO(ticks << " ticks, " << copied << " pages copied early, " << writes.load()
             << " writes, final dirty " << final_dirty.Count());
  CHECK(ticks > 1);
  CHECK(copied > 0);
  INFO("stale copies not reported: " << stale.size() << " [" << FirstFew(stale) << "]");
  CHECK(stale.empty());
  CHECK(unchanged_after_copy > 0);
}

TEST_CASE("never-touched pages: first writes are tracked", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const Kind kind = GENERATE(Kind::kAnon, Kind::kMemfd, Kind::kShm);
  INFO("mapping: " << KindName(kind));
  Mapping m(kind, 8 << 20, /*populate=*/false);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  CheckEmpty(t);

  std::mt19937_64 rng(77);
  std::vector<uint64_t> written = RandomPages(rng, m.pages(), 200);
  std::vector<uint64_t> read = RandomPages(rng, m.pages(), 200);
  WritePages(m.data(), written, rng);
  ReadPages(m.data(), read);
  DirtyBitmap got;
  REQUIRE(t->FetchAndClear(&got).ok());
  const DirtyBitmap want = BitmapOf(m.pages(), written);
  if (kind == Kind::kAnon) {
    CheckExact(got, want);  // a read maps the zero page: not a write
  } else {
    CheckNoneMissed(got, want);  // reads may count as writes here
  }
  CheckEmpty(t);

  // Writes alone (no reads) are exact for every kind.
  std::vector<uint64_t> again = RandomPages(rng, m.pages(), 100);
  WritePages(m.data(), again, rng);
  REQUIRE(t->FetchAndClear(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), again));
}

TEST_CASE("many separate runs overflow the scan buffer", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  Mapping m(Kind::kAnon, 64 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  std::mt19937_64 rng(3);

  // Every other page: 8192 separate runs.
  std::vector<uint64_t> pages;
  for (uint64_t p = 0; p < m.pages(); p += 2) pages.push_back(p);
  WritePages(m.data(), pages, rng);
  DirtyBitmap got;
  REQUIRE(t->Peek(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), pages));
  REQUIRE(t->FetchAndClear(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), pages));
  CheckEmpty(t);

  // One long run plus odd pages: runs are reported merged.
  pages.clear();
  for (uint64_t p = 1000; p < 9000; ++p) pages.push_back(p);
  for (uint64_t p = 9001; p < m.pages(); p += 2) pages.push_back(p);
  WritePages(m.data(), pages, rng);
  REQUIRE(t->FetchAndClear(&got).ok());
  CheckExact(got, BitmapOf(m.pages(), pages));
  CheckEmpty(t);

  // Rearm of every other page: one call per page.
  WritePages(m.data(), pages, rng);
  std::vector<uint64_t> rearm(pages.begin(), pages.end());
  REQUIRE(t->Rearm(rearm).ok());
  CheckEmpty(t);
}

TEST_CASE("large range: 256 MiB with 1% of pages written", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  Mapping m(Kind::kAnon, size_t{256} << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  CheckEmpty(t);
  std::mt19937_64 rng(256);
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    std::vector<uint64_t> pages = RandomPages(rng, m.pages(), m.pages() / 100);
    WritePages(m.data(), pages, rng);
    DirtyBitmap got;
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, BitmapOf(m.pages(), pages));
    CheckEmpty(t);
  }
}

TEST_CASE("transparent huge pages are tracked per small page", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const size_t kHuge = 2 << 20;
  Mapping raw(Kind::kAnon, 34 << 20, /*populate=*/false);
  REQUIRE(raw.data() != nullptr);
  uint8_t* base = reinterpret_cast<uint8_t*>(
      (raw.addr() + kHuge - 1) / kHuge * kHuge);
  const size_t len = 32 << 20;
  madvise(base, len, MADV_HUGEPAGE);  // may fail where THP is off: fine
  memset(base, 1, len);
  auto reg = UffdWpRegistration::Register(base, len);
  REQUIRE(reg.ok());
  auto tracker =
      PagemapDirtyTracker::Open(0, reinterpret_cast<uintptr_t>(base), len);
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  CheckEmpty(t);
  std::mt19937_64 rng(2);
  for (int round = 0; round < 3; ++round) {
    std::vector<uint64_t> pages = RandomPages(rng, t->page_count(), 50);
    WritePages(base, pages, rng);
    DirtyBitmap got;
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, BitmapOf(t->page_count(), pages));
  }
}

TEST_CASE("concurrent writers: no write is lost", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  Mapping m(Kind::kAnon, 32 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();

  // The writer records each page in `written` before storing to it, so
  // every recorded page must show up in some scan that ends after the
  // writer stopped.
  std::vector<std::atomic<uint8_t>> written(m.pages());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    std::mt19937_64 rng(9);
    volatile uint8_t* p = m.data();
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t page = rng() % m.pages();
      written[page].store(1, std::memory_order_relaxed);
      p[page * kPage + rng() % kPage] = static_cast<uint8_t>(rng());
    }
  });
  DirtyBitmap seen(m.pages());
  int scans = 0;
  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  Status st;
  while (st.ok() && std::chrono::steady_clock::now() < deadline) {
    DirtyBitmap got;
    st = t->FetchAndClear(&got);
    seen.Merge(got);
    ++scans;
  }
  stop = true;
  writer.join();
  REQUIRE(st.ok());
  DirtyBitmap last;
  REQUIRE(t->FetchAndClear(&last).ok());
  seen.Merge(last);
  DirtyBitmap want(m.pages());
  for (uint64_t i = 0; i < m.pages(); ++i) {
    if (written[i].load()) want.Set(i);
  }
  INFO(scans << " scans, " << want.Count() << " pages written");
  CHECK(scans > 1);
  CheckExact(seen, want);
}

// ---- another process -------------------------------------------------

struct Command {
  uint32_t op;     // kOpWrite or kOpExit
  uint32_t count;  // page indices that follow
};
constexpr uint32_t kOpWrite = 1;
constexpr uint32_t kOpExit = 2;

// The byte the child stores into page p, at offset ChildOffset(p).
uint8_t ChildByte(uint64_t p, uint32_t round) {
  return static_cast<uint8_t>(p * 31 + round * 7 + 1);
}
size_t ChildOffset(uint64_t p) { return (p * 97) % kPage; }

bool ReadFull(int fd, void* buf, size_t n) {
  uint8_t* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteFull(int fd, const void* buf, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Child: maps the shared file, registers it, sends its address, then
// writes pages on command. Never returns.
[[noreturn]] void ChildMain(int shared_fd, size_t len, int cmd_fd, int ack_fd) {
  void* addr =
      mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd, 0);
  if (addr == MAP_FAILED) _exit(10);
  memset(addr, 0, len);
  auto reg = UffdWpRegistration::Register(addr, len);
  if (!reg.ok()) _exit(11);
  uint64_t a = reinterpret_cast<uintptr_t>(addr);
  if (!WriteFull(ack_fd, &a, sizeof(a))) _exit(12);
  volatile uint8_t* p = static_cast<uint8_t*>(addr);
  for (uint32_t round = 0;; ++round) {
    Command c;
    if (!ReadFull(cmd_fd, &c, sizeof(c))) _exit(13);
    if (c.op == kOpExit) _exit(0);
    std::vector<uint64_t> pages(c.count);
    if (!ReadFull(cmd_fd, pages.data(), c.count * sizeof(uint64_t))) _exit(14);
    for (uint64_t pg : pages) {
      p[pg * kPage + ChildOffset(pg)] = ChildByte(pg, round);
    }
    char ok = 'k';
    if (!WriteFull(ack_fd, &ok, 1)) _exit(15);
  }
}

// Parent side of the child: kills and reaps it unless it exited cleanly.
class Child {
 public:
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {cmd_, ack_}) {
      if (fd >= 0) close(fd);
    }
  }
  bool Start(int shared_fd, size_t len) {
    int cmd[2], ack[2];
    if (pipe2(cmd, O_CLOEXEC) != 0) return false;
    if (pipe2(ack, O_CLOEXEC) != 0) return false;
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      close(cmd[1]);
      close(ack[0]);
      ChildMain(shared_fd, len, cmd[0], ack[1]);
    }
    close(cmd[0]);
    close(ack[1]);
    cmd_ = cmd[1];
    ack_ = ack[0];
    return ReadFull(ack_, &addr_, sizeof(addr_));
  }
  bool Write(const std::vector<uint64_t>& pages) {
    Command c{kOpWrite, static_cast<uint32_t>(pages.size())};
    char ok;
    return WriteFull(cmd_, &c, sizeof(c)) &&
           WriteFull(cmd_, pages.data(), pages.size() * sizeof(uint64_t)) &&
           ReadFull(ack_, &ok, 1) && ok == 'k';
  }
  // Asks the child to exit and reaps it; returns its exit status.
  int Exit() {
    Command c{kOpExit, 0};
    WriteFull(cmd_, &c, sizeof(c));
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }
  pid_t pid() const { return pid_; }
  uint64_t addr() const { return addr_; }

 private:
  pid_t pid_ = -1;
  int cmd_ = -1;
  int ack_ = -1;
  uint64_t addr_ = 0;
};

TEST_CASE("tracking another process's shared mapping", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const Kind kind = GENERATE(Kind::kMemfd, Kind::kShm);
  INFO("mapping: " << KindName(kind));
  const size_t len = 16 << 20;
  const uint64_t pages = len / kPage;
  // The parent's own mapping of the same file.
  Mapping mine(kind, len, /*populate=*/false);
  REQUIRE(mine.data() != nullptr);

  Child child;
  REQUIRE(child.Start(mine.fd(), len));
  auto tracker = PagemapDirtyTracker::Open(child.pid(), child.addr(), len);
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  CHECK(t->pid() == child.pid());
  CheckEmpty(t);

  std::mt19937_64 rng(4242 + static_cast<int>(kind));
  uint32_t round = 0;
  for (; round < 4; ++round) {
    INFO("round " << round);
    std::vector<uint64_t> w = RandomPages(rng, pages, 1 + rng() % 400);
    REQUIRE(child.Write(w));
    // The child's stores are visible through our mapping of the file.
    for (uint64_t p : w) {
      REQUIRE(mine.data()[p * kPage + ChildOffset(p)] == ChildByte(p, round));
    }
    DirtyBitmap got;
    REQUIRE(t->Peek(&got).ok());
    CheckExact(got, BitmapOf(pages, w));
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, BitmapOf(pages, w));
    CheckEmpty(t);
  }

  SECTION("writes through the parent's own mapping are not the child's") {
    std::vector<uint64_t> w = RandomPages(rng, pages, 100);
    std::vector<uint64_t> mine_w;
    for (uint64_t p = 5; p < pages; p += 97) {
      if (!std::binary_search(w.begin(), w.end(), p)) mine_w.push_back(p);
    }
    REQUIRE(child.Write(w));
    WritePages(mine.data(), mine_w, rng);
    DirtyBitmap got;
    REQUIRE(t->FetchAndClear(&got).ok());
    // The child's writes are all there; at most our pages come extra.
    CheckNoneMissed(got, BitmapOf(pages, w));
    DirtyBitmap allowed = BitmapOf(pages, w);
    allowed.Merge(BitmapOf(pages, mine_w));
    CheckNoneMissed(allowed, got);
  }

  SECTION("Rearm from the other process") {
    std::vector<uint64_t> w = RandomPages(rng, pages, 200);
    REQUIRE(child.Write(w));
    std::vector<uint64_t> rearm(w.begin(), w.begin() + 100);
    std::vector<uint64_t> kept(w.begin() + 100, w.end());
    REQUIRE(t->Rearm(rearm).ok());
    DirtyBitmap got;
    REQUIRE(t->FetchAndClear(&got).ok());
    CheckExact(got, BitmapOf(pages, kept));
  }

  SECTION("scanning after the process exited fails cleanly") {
    int status = child.Exit();
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    DirtyBitmap got;
    Status st = t->FetchAndClear(&got);
    INFO(st.ToString());
    CHECK(st.code() == Errc::kNotFound);
    CHECK(st.context().find("has exited") != std::string::npos);
    CHECK(t->Peek(&got).code() == Errc::kNotFound);
    CHECK(t->Rearm(std::vector<uint64_t>{1}).code() == Errc::kNotFound);
  }
}

// ---- errors ------------------------------------------------------------

TEST_CASE("scanning an unregistered range names the problem", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  Mapping m(Kind::kAnon, 4 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  char hex[32];
  snprintf(hex, sizeof(hex), "0x%llx",
           static_cast<unsigned long long>(m.addr()));
  const std::string pid = "pid " + std::to_string(getpid());

  auto check_unregistered = [&](const Status& st) {
    INFO(st.ToString());
    CHECK(st.code() == Errc::kFailedPrecondition);
    CHECK(st.context().find("is not registered with userfaultfd "
                            "write-protect") != std::string::npos);
    CHECK(st.context().find(hex) != std::string::npos);
    CHECK(st.context().find(pid) != std::string::npos);
  };
  DirtyBitmap got;
  check_unregistered(t->FetchAndClear(&got));
  check_unregistered(t->Peek(&got));
  check_unregistered(t->Rearm(std::vector<uint64_t>{0, 1, 2}));

  SECTION("half registered") {
    auto reg = UffdWpRegistration::Register(m.data() + m.len() / 2,
                                            m.len() / 2);
    REQUIRE(reg.ok());
    check_unregistered(t->FetchAndClear(&got));
  }
  SECTION("registration ended") {
    {
      auto reg = UffdWpRegistration::Register(m.data(), m.len());
      REQUIRE(reg.ok());
      REQUIRE(t->FetchAndClear(&got).ok());
    }
    check_unregistered(t->FetchAndClear(&got));
    m.data()[0] = 1;  // plain writable memory again
  }
}

TEST_CASE("bad arguments are rejected", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  Mapping m(Kind::kAnon, 1 << 20, /*populate=*/true);
  REQUIRE(m.data() != nullptr);

  auto reg_code = [](void* addr, size_t len) {
    auto r = UffdWpRegistration::Register(addr, len);
    INFO(r.status().ToString());
    return r.status().code();
  };
  CHECK(reg_code(nullptr, kPage) == Errc::kInvalidArgument);
  CHECK(reg_code(m.data(), 0) == Errc::kInvalidArgument);
  CHECK(reg_code(m.data() + 1, kPage) == Errc::kInvalidArgument);
  CHECK(reg_code(m.data(), kPage + 1) == Errc::kInvalidArgument);
  // Past the end of the mapping (the next page is a guard we unmap).
  {
    Mapping hole(Kind::kAnon, 2 * kPage, true);
    REQUIRE(munmap(hole.data() + kPage, kPage) == 0);
    CHECK(reg_code(hole.data(), 2 * kPage) == Errc::kInvalidArgument);
    REQUIRE(mmap(hole.data() + kPage, kPage, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) !=
            MAP_FAILED);
  }

  auto open_code = [](pid_t pid, uint64_t addr, size_t len) {
    auto r = PagemapDirtyTracker::Open(pid, addr, len);
    INFO(r.status().ToString());
    return r.status().code();
  };
  CHECK(open_code(0, m.addr(), 0) == Errc::kInvalidArgument);
  CHECK(open_code(0, m.addr() + 8, kPage) == Errc::kInvalidArgument);
  CHECK(open_code(0, m.addr(), kPage - 8) == Errc::kInvalidArgument);
  CHECK(open_code(0, 0, kPage) == Errc::kInvalidArgument);
  CHECK(open_code(0, ~uint64_t{0} - kPage + 1, 2 * kPage) ==
        Errc::kInvalidArgument);
  CHECK(open_code(-5, m.addr(), kPage) == Errc::kInvalidArgument);
  {
    pid_t gone = fork();
    REQUIRE(gone >= 0);
    if (gone == 0) _exit(0);
    waitpid(gone, nullptr, 0);
    CHECK(open_code(gone, m.addr(), kPage) == Errc::kNotFound);
  }

  auto reg = UffdWpRegistration::Register(m.data(), m.len());
  REQUIRE(reg.ok());
  // A second userfaultfd cannot take over the range.
  auto again = UffdWpRegistration::Register(m.data(), kPage);
  INFO(again.status().ToString());
  CHECK(again.status().code() == Errc::kFailedPrecondition);

  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), m.len());
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  m.data()[3 * kPage] = 7;
  Status st = t->Rearm(std::vector<uint64_t>{3, m.pages()});
  CHECK(st.code() == Errc::kInvalidArgument);
  CHECK(t->FetchAndClear(nullptr).code() == Errc::kInvalidArgument);
  DirtyBitmap got;
  REQUIRE(t->FetchAndClear(&got).ok());  // the bad Rearm changed nothing
  CheckExact(got, BitmapOf(m.pages(), {3}));
}

TEST_CASE("a stale registration leaves a newer one alone", "[linux]") {
  SKIP_UNLESS_UFFD_WP_ASYNC();
  const size_t len = 1 << 20;
  Mapping m(Kind::kAnon, len, /*populate=*/true);
  REQUIRE(m.data() != nullptr);
  auto old_reg = UffdWpRegistration::Register(m.data(), len);
  REQUIRE(old_reg.ok());
  // Replace the mapping and register the new one.
  REQUIRE(mmap(m.data(), len, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == m.data());
  memset(m.data(), 3, len);
  auto new_reg = UffdWpRegistration::Register(m.data(), len);
  REQUIRE(new_reg.ok());
  old_reg.value().reset();

  auto tracker = PagemapDirtyTracker::Open(0, m.addr(), len);
  REQUIRE(tracker.ok());
  PagemapDirtyTracker* t = tracker.value().get();
  m.data()[5 * kPage + 9] = 1;
  DirtyBitmap got;
  Status st = t->FetchAndClear(&got);
  INFO(st.ToString());
  REQUIRE(st.ok());
  CheckExact(got, BitmapOf(len / kPage, {5}));
}

}  // namespace
}  // namespace ftsync
