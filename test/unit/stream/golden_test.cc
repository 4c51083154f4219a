// Golden streams, both ways between libftsync and the independent verifier
// (xen-tools/ftsync-verify-stream.c, which shares no code with the library):
//  - the library writes streams, good and bad, into $FTSYNC_GOLDEN_DIR for
//    test/spec/check-golden to verify; their names say the expected verdict;
//  - the library decodes the committed streams in test/spec/golden/, made by
//    the verifier's author from the spec alone, and must reach the verdicts
//    their names say.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>

#include "ftsync/checkpointer.h"
#include "ftsync/receiver.h"
#include "diff/page_delta.h"
#include "diff/shadow_store.h"
#include "stream/compression.h"
#include "stream/format.h"
#include "stream/records.h"
#include "test_util.h"
#include "testing/fake_domain.h"
#include "testing/workload.h"

namespace ftsync {
namespace {
namespace fs = std::filesystem;
using namespace internal;
using test::StreamBuilder;

void WriteFile(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

std::vector<uint8_t> ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The library's verdict on a stored forward stream: a Receiver into a
// scratch replica.
Status Decode(const fs::path& p) {
  test::TempDir dir;
  auto rep = ReplicaImage::Open(dir.Sub("r"));
  if (!rep.ok()) return rep.status();
  test::BufferSource in(ReadFile(p));
  std::vector<uint8_t> back;
  test::VectorSink bs(&back);
  Receiver rx(rep->get(), &in, &bs);
  Status s = rx.Handshake();
  if (s.ok()) s = rx.Run();
  return s;
}

// Copies every byte written to two sinks.
class TeeSink : public ByteSink {
 public:
  TeeSink(ByteSink* a, std::vector<uint8_t>* copy) : a_(a), copy_(copy) {}
  Status Write(std::span<const ConstBuffer> bufs) override {
    for (ConstBuffer b : bufs) copy_->insert(copy_->end(), b.begin(), b.end());
    return a_->Write(bufs);
  }
  Status Close() override { return a_->Close(); }

 private:
  ByteSink* a_;
  std::vector<uint8_t>* copy_;
};

// A real session: FakeDomain, Checkpointer, Receiver; both directions kept.
// Default options: deltas (runs) and zstd; `tweak` may change them.
void RealSession(std::vector<uint8_t>* fwd, std::vector<uint8_t>* back,
                 const std::function<void(CheckpointerOptions&)>& tweak = nullptr) {
  testing::FakeDomain dom(64, 4096, "golden", 3);
  testing::Workload work(testing::WorkloadKind::kMixed, 3);
  MemoryPipe f, b;
  TeeSink ftee(&f.sink(), fwd), btee(&b.sink(), back);
  test::TempDir dir;
  auto rep = ReplicaImage::Open(dir.Sub("r"));
  REQUIRE(rep.ok());
  Receiver rx(rep->get(), &f.source(), &btee);
  Status rs;
  std::thread t([&] {
    rs = rx.Handshake();
    if (rs.ok()) rs = rx.Run();
  });
  CheckpointerOptions o;
  o.batch_pages = 24;
  o.session = 0x601d;
  if (tweak) tweak(o);
  Checkpointer cp(&dom, &ftee, &b.source(), o);
  REQUIRE(cp.Start().ok());
  for (int e = 0; e < 4; ++e) {
    REQUIRE(work.Step(&dom).ok());
    if (o.speculation != Speculation::kOff) {
      REQUIRE(cp.Speculate().ok());
      REQUIRE(work.Step(&dom).ok());
    }
    REQUIRE(cp.Checkpoint().ok());
    REQUIRE(cp.SendHeartbeat().ok());
  }
  REQUIRE(cp.Finish().ok());
  t.join();
  REQUIRE(rs.ok());
}

// A page that differs from `p` in a few bytes.
std::vector<uint8_t> Touched(std::vector<uint8_t> p, uint8_t v) {
  p[10] = v;
  p[11] = v;
  p[4000] = v;
  return p;
}

// Writes a PAGE_DELTA changing each frame from `base` to `cur`; the base
// hash is the hash of `base` unless given.
void Delta(StreamBuilder& b, uint64_t pfn, const std::vector<uint8_t>& base,
           const std::vector<uint8_t>& cur, std::optional<uint64_t> base_hash = std::nullopt) {
  PageDeltaBuilder d;
  uint8_t out[kMaxDeltaSize];
  EncodedDelta e = EncodePageDelta(base.data(), cur.data(), DeltaOptions{},
                                   std::span<uint8_t, kMaxDeltaSize>(out, kMaxDeltaSize));
  d.Add(pfn, base_hash.value_or(PageContentHash(base.data())), std::span<const uint8_t>(out, e.size));
  REQUIRE(b.w.PageDelta(d.body()).ok());
}

// A COMPRESSED record of `body` (type `inner`), its body edited by `edit`.
void Compressed(StreamBuilder& b, uint32_t inner, const std::vector<uint8_t>& body, Codec codec,
                const std::function<void(std::vector<uint8_t>&)>& edit) {
  auto c = Compressor::Create(codec, 0);
  REQUIRE(c.ok());
  std::vector<uint8_t> data;
  REQUIRE(*(*c)->Compress(body, body.size() + 4096, &data));
  std::vector<uint8_t> rec(kCompressedHeader);
  PutCompressedHeader(rec.data(), CompressedHeader{inner, static_cast<uint32_t>(body.size()),
                                                    RecordChecksum(inner, body.data(), body.size()),
                                                    static_cast<uint8_t>(codec)});
  rec.insert(rec.end(), data.begin(), data.end());
  edit(rec);
  ConstBuffer part(rec);
  (void)b.w.WriteRecord(kCompressed, std::span(&part, 1));
}

// A PAGE_DATA body of `pfns` with epoch `epoch`'s pattern.
std::vector<uint8_t> PagesBody(uint64_t epoch, std::vector<uint64_t> pfns) {
  std::vector<uint8_t> v(8 + 8 * pfns.size());
  PutLE32(v.data(), static_cast<uint32_t>(pfns.size()));
  for (size_t i = 0; i < pfns.size(); ++i) PutLE64(v.data() + 8 + 8 * i, pfns[i]);
  for (uint64_t p : pfns) {
    auto page = test::PatternPage(p, epoch);
    v.insert(v.end(), page.begin(), page.end());
  }
  return v;
}

using Make = std::function<void(StreamBuilder&)>;
struct BadStream {
  const char* rule;
  const char* name;
  Make make;  // appends the defect after a good prefix (epochs 0 and 1)
};

StreamBuilder Good() {
  StreamBuilder b;
  b.Header().Epoch(0).Epoch(1, {1, 2});
  return b;
}

std::vector<BadStream> BadStreams() {
  auto header = [](std::function<void(std::vector<uint8_t>&)> edit, bool rechecksum) {
    return [=](StreamBuilder& b) {
      edit(b.bytes);
      if (rechecksum) test::RechecksumHeader(&b.bytes);
      (void)b.w.End();
    };
  };
  return {
      {"H1", "magic", header([](auto& v) { v[0] = 'X'; }, true)},
      {"H2", "version-7", header([](auto& v) { PutLE32(&v[8], 7); }, true)},
      {"H3", "frame-count-bit", header([](auto& v) { v[24] ^= 1; }, false)},
      {"H4", "reserved-flag", header([](auto& v) { v[12] |= 4; }, true)},
      {"H5", "page-size-4097", header([](auto& v) { PutLE32(&v[16], 4097); }, true)},
      {"H6", "frame-count-0", header([](auto& v) { PutLE64(&v[24], 0); }, true)},
      {"H7", "session-0", header([](auto& v) { PutLE64(&v[32], 0); }, true)},
      {"H8", "back-channel-bit", header([](auto& v) { v[12] |= 1; }, true)},
      {"R1", "device-state-too-long",
       [](StreamBuilder& b) {
         uint8_t hdr[16] = {};
         PutLE32(hdr, kDeviceState);
         PutLE32(hdr + 4, 0xfffffff0u);
         b.bytes.insert(b.bytes.end(), hdr, hdr + 16);
       }},
      {"R2", "page-bit",
       [](StreamBuilder& b) {
         size_t at = b.size();
         b.Epoch(2, {3});
         b.bytes[at + 32 + 16 + 16 + 7] ^= 0x10;
         (void)b.w.End();
       }},
      {"R3", "padding",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         uint8_t three[3] = {1, 2, 3};
         (void)b.w.DeviceState(three);
         b.bytes.back() = 1;
         (void)b.w.EpochCommit(2, 0);
         (void)b.w.End();
       }},
      {"R4", "unknown-mandatory", [](StreamBuilder& b) { (void)b.w.WriteRecord(0x77, {}); (void)b.w.End(); }},
      {"R4", "type-0-optional", [](StreamBuilder& b) { (void)b.w.WriteRecord(kOptionalBit, {}); (void)b.w.End(); }},
      {"R5", "known-optional",
       [](StreamBuilder& b) {
         uint8_t body[16] = {2};
         ConstBuffer part(body, 16);
         (void)b.w.WriteRecord(kEpochBegin | kOptionalBit, std::span(&part, 1));
         (void)b.w.End();
       }},
      {"R7", "epoch-begin-8-bytes",
       [](StreamBuilder& b) {
         uint8_t body[8] = {2};
         ConstBuffer part(body, 8);
         (void)b.w.WriteRecord(kEpochBegin, std::span(&part, 1));
         (void)b.w.End();
       }},
      {"R8", "ack-on-forward", [](StreamBuilder& b) { (void)b.w.Ack(1); (void)b.w.End(); }},
      {"O1", "state-between-epochs", [](StreamBuilder& b) { b.State(2); (void)b.w.End(); }},
      {"O2", "begin-twice",
       [](StreamBuilder& b) { (void)b.w.EpochBegin(2); (void)b.w.EpochBegin(3); (void)b.w.End(); }},
      {"O3", "epoch-repeated", [](StreamBuilder& b) { b.Epoch(1, {1}); (void)b.w.End(); }},
      {"O4", "commit-other-epoch",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         b.State(2);
         (void)b.w.EpochCommit(4, 0);
         (void)b.w.End();
       }},
      {"O5", "pages-miscounted",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         b.Pages(2, {3, 4}).State(2);
         (void)b.w.EpochCommit(2, 1);
         (void)b.w.End();
       }},
      {"O6", "no-state",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         b.Pages(2, {3});
         (void)b.w.EpochCommit(2, 1);
         (void)b.w.End();
       }},
      {"O8", "pfn-too-big", [](StreamBuilder& b) { b.Epoch(2, {9}); (void)b.w.End(); }},
      {"O9", "end-inside-epoch", [](StreamBuilder& b) { (void)b.w.EpochBegin(2); (void)b.w.End(); }},
      {"D2", "delta-page-size-8192", [](StreamBuilder& b) {}},  // made below: another header
      {"S1", "spec-for-epoch-3-after-epoch-1",
       [](StreamBuilder& b) {
         const uint64_t p[] = {3};
         (void)b.w.SpecPageData(3, p, test::PatternPage(3, 9).data(), 4096);
         (void)b.w.End();
       }},
      {"S1", "spec-inside-epoch",
       [](StreamBuilder& b) {
         const uint64_t p[] = {3};
         (void)b.w.EpochBegin(2);
         (void)b.w.SpecPageData(2, p, test::PatternPage(3, 9).data(), 4096);
         (void)b.w.End();
       }},
      {"S2", "apply-unstaged-frame",
       [](StreamBuilder& b) {
         const uint64_t p3[] = {3}, p4[] = {4};
         (void)b.w.SpecPageData(2, p3, test::PatternPage(3, 9).data(), 4096);
         (void)b.w.EpochBegin(2);
         (void)b.w.SpecApply(p4);
         b.State(2);
         (void)b.w.EpochCommit(2, 1);
         (void)b.w.End();
       }},
      {"D3", "runs-overlap",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         PageDeltaBuilder d;
         const uint8_t bad[] = {0x04, 0x02, 0x00, 0x10, 0x00, 0x02, 0x00, 1, 2, 0x11, 0x00, 0x01, 0x00, 3};
         d.Add(3, PageContentHash(test::PatternPage(3, 0).data()), bad);
         (void)b.w.PageDelta(d.body());
         (void)b.w.End();
       }},
      {"D4", "stale-base",
       [](StreamBuilder& b) {
         // Frame 1 changed in epoch 1; a delta against its epoch-0 copy.
         (void)b.w.EpochBegin(2);
         auto p = test::PatternPage(1, 0);
         Delta(b, 1, p, Touched(p, 1));
         b.State(2);
         (void)b.w.EpochCommit(2, 1);
         (void)b.w.End();
       }},
      {"D4", "second-delta-names-the-first-base",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         auto p = test::PatternPage(4, 0);
         Delta(b, 4, p, Touched(p, 1));
         Delta(b, 4, p, Touched(p, 2));
         b.State(2);
         (void)b.w.EpochCommit(2, 2);
         (void)b.w.End();
       }},
      {"C1", "codec-3",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         Compressed(b, kPageData, PagesBody(2, {3}), Codec::kZlib, [](auto& v) { v[16] = 3; });
         (void)b.w.End();
       }},
      {"C2", "wraps-epoch-commit",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         Compressed(b, kPageData, PagesBody(2, {3}), Codec::kZstd,
                    [](auto& v) { PutLE32(v.data(), kEpochCommit); });
         (void)b.w.End();
       }},
      {"C3", "inner-length-above-max",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         Compressed(b, kPageData, PagesBody(2, {3}), Codec::kZlib, [](auto& v) {
           PutLE32(v.data() + 4, static_cast<uint32_t>(MaxBodyLength(kPageData, 4096) + 1));
         });
         (void)b.w.End();
       }},
      {"C4", "zlib-bomb",
       [](StreamBuilder& b) {
         // The data inflates to more than the header announces.
         (void)b.w.EpochBegin(2);
         Compressed(b, kDeviceState, std::vector<uint8_t>(1 << 20, 0), Codec::kZlib,
                    [](auto& v) { PutLE32(v.data() + 4, 4096); });
         (void)b.w.End();
       }},
      {"C4", "zstd-trailing-bytes",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         Compressed(b, kPageData, PagesBody(2, {3, 4}), Codec::kZstd, [](auto& v) { v.push_back(0); });
         (void)b.w.End();
       }},
      {"C5", "inner-checksum",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         Compressed(b, kPageData, PagesBody(2, {3}), Codec::kZstd, [](auto& v) { v[9] ^= 4; });
         (void)b.w.End();
       }},
      {"O8", "compressed-pfn-too-big",
       [](StreamBuilder& b) {
         (void)b.w.EpochBegin(2);
         Compressed(b, kPageData, PagesBody(2, {3, 8}), Codec::kZlib, [](auto&) {});
         (void)b.w.End();
       }},
  };
}

const char* kDir = "FTSYNC_GOLDEN_DIR";

TEST_CASE("golden: libftsync writes streams for the independent verifier", "[golden]") {
  const char* env = std::getenv(kDir);
  test::TempDir scratch;
  fs::path out = env ? fs::path(env) : fs::path(scratch.path());

  std::vector<uint8_t> fwd, back;
  RealSession(&fwd, &back);
  WriteFile(out / "valid-real-session.fts", fwd);
  WriteFile(out / "back-valid-real-session.fts", back);
  WriteFile(out / "back-valid-real-session.fwd", fwd);
  const std::pair<const char*, std::function<void(CheckpointerOptions&)>> variants[] = {
      {"whole-pages", [](CheckpointerOptions& o) { o.delta = DeltaMode::kOff; o.compression = Compression::kNone; }},
 {"speculative-eager", [](CheckpointerOptions& o) { o.speculation = Speculation::kEager; }},
      {"hash-blocks-zlib", [](CheckpointerOptions& o) { o.delta = DeltaMode::kBlockHash; o.compression = Compression::kZlib; }},
      {"blocks-256-small-store", [](CheckpointerOptions& o) {
         o.delta = DeltaMode::kBlocks;
         o.delta_block_size = 256;
         o.shadow_budget_bytes = 40 * 4128;  // 40 of the 64 frames: evictions
         o.compression = Compression::kNone;
       }},
  };
  for (const auto& [name, tweak] : variants) {
    std::vector<uint8_t> f, bk;
    RealSession(&f, &bk, tweak);
    WriteFile(out / (std::string("valid-real-session-") + name + ".fts"), f);
  }

  StreamBuilder g = Good();
  (void)g.w.End();
  WriteFile(out / "valid-builder.fts", g.bytes);

  StreamBuilder cut = Good();
  (void)cut.w.EpochBegin(2);
  cut.Pages(2, {3});  // the primary died at a record boundary inside epoch 2
  WriteFile(out / "incomplete-inside-epoch-2.fts", cut.bytes);

  // Epoch 0 missing a frame has no good prefix to follow.
  StreamBuilder o7;
  o7.Header();
  (void)o7.w.EpochBegin(0);
  o7.Pages(0, {0, 1, 2, 3, 4, 5, 6}).State(0);
  (void)o7.w.EpochCommit(0, 7);
  (void)o7.w.End();
  WriteFile(out / "bad-O7-frame-7-missing.fts", o7.bytes);

  // Deltas and compression, valid: epoch 2 changes frames by deltas against
  // epoch 0's and epoch 1's copies, one of them sent whole first, with
  // compressed PAGE_DATA, PAGE_DELTA and DEVICE_STATE (zlib, then zstd).
  for (Codec codec : {Codec::kZlib, Codec::kZstd}) {
    StreamBuilder d = Good();
    (void)d.w.EpochBegin(2);
    auto p3 = test::PatternPage(3, 0), p1 = test::PatternPage(1, 1), p5 = test::PatternPage(5, 2);
    Delta(d, 3, p3, Touched(p3, 0x33));
    d.Pages(2, {5});
    Delta(d, 5, p5, Touched(p5, 0x55));
    Delta(d, 1, p1, Touched(p1, 0x11));
    REQUIRE(d.w.SetCompression(codec, 0).ok());
    d.Pages(2, {6, 7});
    Delta(d, 3, Touched(p3, 0x33), std::vector<uint8_t>(4096, 0));  // a large delta: compresses
    std::string st(3000, 's');
    (void)d.w.DeviceState(std::span(reinterpret_cast<const uint8_t*>(st.data()), st.size()));
    (void)d.w.EpochCommit(2, 7);
    (void)d.w.End();
    WriteFile(out / (std::string("valid-delta-compressed-") + CodecName(codec) + ".fts"), d.bytes);
    CHECK(Decode(out / (std::string("valid-delta-compressed-") + CodecName(codec) + ".fts")).ok());
  }

  {  // Speculative pages: 3 and 4 ahead, both named, 4 changed since (a delta).
    StreamBuilder sp = Good();
    const uint64_t ahead[] = {3, 4, 5}, named[] = {3, 4};
    std::vector<uint8_t> data;
    for (uint64_t p : ahead) {
      auto pg = test::PatternPage(p, 9);
      data.insert(data.end(), pg.begin(), pg.end());
    }
    REQUIRE(sp.w.SpecPageData(2, ahead, data.data(), 4096).ok());
    (void)sp.w.EpochBegin(2);
    REQUIRE(sp.w.SpecApply(named).ok());
    auto p4 = test::PatternPage(4, 9);
    Delta(sp, 4, p4, Touched(p4, 0x44));
    sp.State(2);
    (void)sp.w.EpochCommit(2, 3);
    (void)sp.w.End();
    WriteFile(out / "valid-speculative-builder.fts", sp.bytes);
  }

  StreamBuilder d1;
  d1.Header();
  (void)d1.w.EpochBegin(0);
  Delta(d1, 0, test::PatternPage(0, 0), Touched(test::PatternPage(0, 0), 1));
  (void)d1.w.End();
  WriteFile(out / "bad-D1-delta-in-epoch-0.fts", d1.bytes);

  for (const BadStream& bs : BadStreams()) {
    if (std::string(bs.rule) == "D2") {
      StreamBuilder b;
      b.h.page_size = 8192;
      b.Header().Epoch(0).Epoch(1, {1});
      (void)b.w.EpochBegin(2);
      auto p = test::PatternPage(3, 0);
      Delta(b, 3, p, Touched(p, 1));
      (void)b.w.End();
      WriteFile(out / (std::string("bad-") + bs.rule + "-" + bs.name + ".fts"), b.bytes);
      continue;
    }
    StreamBuilder b = Good();
    bs.make(b);
    WriteFile(out / (std::string("bad-") + bs.rule + "-" + bs.name + ".fts"), b.bytes);
  }
  // Each file the library writes must also meet its own verdict.
  for (const auto& e : fs::directory_iterator(out)) {
    std::string name = e.path().filename();
    if (name.rfind("bad-", 0) != 0) continue;
    Status s = Decode(e.path());
    std::string rule = "[" + name.substr(4, name.find('-', 4) - 4) + "]";
    INFO(name << ": " << s.ToString());
    CHECK(s.context().find(rule) != std::string::npos);
  }
}

TEST_CASE("golden: committed streams decode with the verdicts their names say", "[golden]") {
  fs::path dir = "test/spec/golden";
  REQUIRE(fs::is_directory(dir));  // run from the source tree's top
  int checked = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename();
    if (e.path().extension() != ".fts" || name.rfind("back-", 0) == 0) continue;
    Status s = Decode(e.path());
    INFO(name << ": " << s.ToString());
    if (name.rfind("valid-", 0) == 0) {
      CHECK(s.ok());
    } else if (name.rfind("incomplete-", 0) == 0) {
      CHECK(s.IsFailover());
      CHECK(s.context().find("[O10]") != std::string::npos);
    } else {
      std::string rule = "[" + name.substr(4, name.find('-', 4) - 4) + "]";
      CHECK(s.context().find(rule) != std::string::npos);
    }
    ++checked;
  }
  CHECK(checked >= 10);
}

TEST_CASE("golden: the byte layout of the header and a record is locked", "[golden][stream]") {
  StreamHeader h;
  h.frame_count = 0x0102030405;
  h.session = 0x1122334455667788;
  auto b = EncodeStreamHeader(h);
  const uint8_t want[40] = {'F', 'T', 'S', 'Y', 'N', 'C', '\r', '\n',  // magic
                            1, 0, 0, 0,                                  // version
                            0, 0, 0, 0,                                  // flags
                            0, 0x10, 0, 0,                               // page_size 4096
                            0, 0, 0, 0,                                  // reserved
                            5, 4, 3, 2, 1, 0, 0, 0,                      // frame_count
                            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  CHECK(std::memcmp(b.data(), want, 40) == 0);
  CHECK(GetLE64(&b[40]) == XXH3_64bits(want, 40));

  std::vector<uint8_t> rec;
  test::VectorSink sink(&rec);
  RecordWriter w(&sink);
  REQUIRE(w.EpochBegin(0x0a0b).ok());
  REQUIRE(rec.size() == 32);
  const uint8_t body[16] = {0x0b, 0x0a};
  CHECK(GetLE32(&rec[0]) == 1);
  CHECK(GetLE32(&rec[4]) == 16);
  CHECK(GetLE64(&rec[8]) == XXH3_64bits_withSeed(body, 16, 1 | (uint64_t{16} << 32)));
  CHECK(std::memcmp(&rec[16], body, 16) == 0);
  rec.clear();
  uint8_t three[3] = {7, 8, 9};
  REQUIRE(w.DeviceState(three).ok());
  CHECK(rec.size() == 16 + 8);  // padded to 8
  CHECK(rec[16 + 3] == 0);
}

}  // namespace
}  // namespace ftsync
