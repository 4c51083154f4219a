// The backup's replica directory: full synchronisation by generation,
// in-place epochs, persistence across reopen, and a full disk that never
// costs the last complete epoch.
#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <filesystem>
#include <fstream>

#include "ftsync/replica.h"
#include "test_util.h"

namespace ftsync {
namespace {
using test::PatternPage;
using test::TempDir;

std::vector<PageWrite> Writes(const std::vector<std::vector<uint8_t>>& pages,
                              const std::vector<uint64_t>& pfns) {
  std::vector<PageWrite> w;
  for (size_t i = 0; i < pfns.size(); ++i) w.push_back({pfns[i], pages[i].data()});
  return w;
}

// Epoch 0 with PatternPage(p, 0) for all `frames`, state "s0".
void FullSync(ReplicaImage* r, uint64_t frames, uint64_t session = 1) {
  REQUIRE(r->BeginFull(session, 4096, frames).ok());
  std::vector<std::vector<uint8_t>> pages;
  std::vector<uint64_t> pfns;
  for (uint64_t p = 0; p < frames; ++p) {
    pages.push_back(PatternPage(p, 0));
    pfns.push_back(p);
  }
  REQUIRE(r->WriteFullPages(Writes(pages, pfns)).ok());
  const uint8_t s0[2] = {'s', '0'};
  REQUIRE(r->CommitFull(0, s0).ok());
}

TEST_CASE("replica: full sync, epochs, and reopen", "[replica]") {
  TempDir d;
  {
    auto r = ReplicaImage::Open(d.path());
    REQUIRE(r.ok());
    CHECK_FALSE((*r)->LastComplete().has_value());
    CHECK((*r)->ReadState().status().code() == Errc::kNotFound);
    FullSync(r->get(), 16);
    auto pages = std::vector<std::vector<uint8_t>>{PatternPage(3, 1), PatternPage(9, 1)};
    const uint8_t s1[2] = {'s', '1'};
    REQUIRE((*r)->ApplyEpoch(1, 1, Writes(pages, {3, 9}), s1).ok());
    // Out of sequence and wrong session are refused, nothing changes.
    CHECK((*r)->ApplyEpoch(1, 3, {}, s1).code() == Errc::kFailedPrecondition);
    CHECK((*r)->ApplyEpoch(2, 2, {}, s1).code() == Errc::kFailedPrecondition);
  }
  auto r = ReplicaImage::Open(d.path());
  REQUIRE(r.ok());
  auto info = (*r)->LastComplete();
  REQUIRE(info.has_value());
  CHECK(info->epoch == 1);
  CHECK(info->session == 1);
  CHECK(info->frame_count == 16);
  std::vector<uint8_t> page(4096);
  for (uint64_t p = 0; p < 16; ++p) {
    REQUIRE((*r)->ReadFrame(p, page.data()).ok());
    CHECK(page == PatternPage(p, (p == 3 || p == 9) ? 1 : 0));
  }
  CHECK(*(*r)->ReadState() == std::vector<uint8_t>{'s', '1'});
  CHECK(std::filesystem::file_size((*r)->memory_path()) == 16 * 4096);
}

TEST_CASE("replica: an abandoned full sync leaves the previous replica", "[replica]") {
  TempDir d;
  auto r = ReplicaImage::Open(d.path());
  FullSync(r->get(), 8, 1);
  REQUIRE((*r)->BeginFull(2, 4096, 8).ok());
  auto junk = std::vector<std::vector<uint8_t>>{std::vector<uint8_t>(4096, 0xee)};
  REQUIRE((*r)->WriteFullPages(Writes(junk, {0})).ok());
  (*r)->AbortFull();
  auto again = ReplicaImage::Open(d.path());  // also after a crash mid-sync
  std::vector<uint8_t> page(4096);
  REQUIRE((*again)->ReadFrame(0, page.data()).ok());
  CHECK(page == PatternPage(0, 0));
  CHECK((*again)->LastComplete()->session == 1);
  // Only one generation directory remains after a completed resync.
  FullSync(again->get(), 8, 3);
  int gens = 0;
  for (auto& e : std::filesystem::directory_iterator(d.path()))
    if (e.path().filename().string().rfind("gen-", 0) == 0) ++gens;
  CHECK(gens == 1);
}

TEST_CASE("replica: a meta file left mid-apply opens as incomplete", "[replica]") {
  TempDir d;
  {
    auto r = ReplicaImage::Open(d.path());
    FullSync(r->get(), 4);
  }
  std::string meta = d.path() + "/current/replica.meta";
  std::string text;
  {
    std::ifstream f(meta);
    text.assign(std::istreambuf_iterator<char>(f), {});
  }
  auto pos = text.find("complete 1");
  REQUIRE(pos != std::string::npos);
  text[pos + 9] = '0';
  {
    std::ofstream f(meta);
    f << text;
  }
  auto r = ReplicaImage::Open(d.path());
  REQUIRE(r.ok());
  CHECK_FALSE((*r)->LastComplete().has_value());
}

TEST_CASE("replica: garbage meta is a clear error", "[replica]") {
  TempDir d;
  {
    auto r = ReplicaImage::Open(d.path());
    FullSync(r->get(), 4);
  }
  {
    std::ofstream f(d.path() + "/current/replica.meta");
    f << "hello\n";
  }
  auto r = ReplicaImage::Open(d.path());
  CHECK(r.status().code() == Errc::kCorruption);
  CHECK(r.status().context().find("replica.meta") != std::string::npos);
}

// A small tmpfs stands in for a full disk. Needs root (CI runs as root).
struct SmallFs {
  TempDir dir;
  bool mounted = false;
  explicit SmallFs(const char* size) {
    std::string opts = std::string("size=") + size;
    mounted = ::mount("ftsync-test", dir.path().c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~SmallFs() {
    if (mounted) ::umount2(dir.path().c_str(), MNT_DETACH);
  }
};

TEST_CASE("replica: a full disk fails cleanly and keeps the last complete epoch", "[replica]") {
  SmallFs fs("400k");
  if (!fs.mounted) {
    WARN("skipping: cannot mount a tmpfs here (needs root): " << std::strerror(errno));
    return;
  }
  auto r = ReplicaImage::Open(fs.dir.path() + "/rep");
  REQUIRE(r.ok());
  SECTION("a guest too large for the disk") {
    Status s = (*r)->BeginFull(1, 4096, 1024);  // 4 MiB
    CHECK(s.code() == Errc::kNoSpace);
    CHECK(s.context().find("full synchronisation") != std::string::npos);
    CHECK_FALSE((*r)->LastComplete().has_value());
  }
  SECTION("a state that no longer fits") {
    FullSync(r->get(), 32);  // 128 KiB image
    // Fill the disk to the brim.
    std::ofstream filler(fs.dir.path() + "/filler", std::ios::binary);
    std::vector<char> chunk(4096, 'x');
    while (filler.write(chunk.data(), chunk.size())) {}
    filler.close();
    std::vector<uint8_t> big_state(64 * 1024, 0x5a);
    auto pages = std::vector<std::vector<uint8_t>>{std::vector<uint8_t>(4096, 0xee)};
    Status s = (*r)->ApplyEpoch(1, 1, Writes(pages, {2}), big_state);
    INFO(s.ToString());
    CHECK(s.code() == Errc::kNoSpace);
    auto again = ReplicaImage::Open(fs.dir.path() + "/rep");
    REQUIRE(again.ok());
    REQUIRE((*again)->LastComplete().has_value());
    CHECK((*again)->LastComplete()->epoch == 0);
    std::vector<uint8_t> page(4096);
    REQUIRE((*again)->ReadFrame(2, page.data()).ok());
    CHECK(page == PatternPage(2, 0));
    CHECK(*(*again)->ReadState() == std::vector<uint8_t>{'s', '0'});
  }
}

}  // namespace
}  // namespace ftsync
