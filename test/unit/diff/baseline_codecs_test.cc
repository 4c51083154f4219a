// The XOR+RLE and XBZRLE baselines (baseline_codecs.h): round trips, the
// worked examples, the capacity limit, and malformed input.
#include <catch2/catch.hpp>

#include <optional>
#include <random>
#include <vector>

#include "diff/baseline_codecs.h"
#include "diff/diff_test_pages.h"

namespace ftsync {
namespace {
using namespace internal;
using test::Page;
using Bytes = std::vector<uint8_t>;

using EncodeFn = std::optional<size_t> (*)(const uint8_t*, const uint8_t*, std::span<uint8_t>);
using DecodeFn = Status (*)(std::span<const uint8_t>, std::span<uint8_t>);

struct Codec {
  const char* name;
  EncodeFn encode;
  DecodeFn decode;
};
const Codec kCodecs[] = {{"XOR+RLE", XorRleEncode, XorRleDecode},
                         {"XBZRLE", XbzrleEncode, XbzrleDecode}};

std::optional<Bytes> Encode(const Codec& c, const Page& base, const Page& cur, size_t cap) {
  Bytes out(cap + 16, 0xEE);  // guard bytes after the capacity
  auto n = c.encode(base.data(), cur.data(), std::span<uint8_t>(out.data(), cap));
  for (size_t i = cap; i < out.size(); ++i) REQUIRE(out[i] == 0xEE);
  if (!n) return std::nullopt;
  REQUIRE(*n <= cap);
  out.resize(*n);
  return out;
}

void RequireRejected(const Codec& c, const Bytes& in) {
  Page page(kDiffPageSize, 0x33);
  Status s = c.decode(in, page);
  INFO(c.name << ": " << s.ToString());
  CHECK(s.code() == Errc::kCorruption);
  CHECK(page == Page(kDiffPageSize, 0x33));
}

TEST_CASE("baselines: round trip on every test page", "[diff]") {
  for (const Codec& c : kCodecs) {
    for (const auto& pp : test::TestPagePairs()) {
      INFO(c.name << ": " << pp.name);
      auto enc = Encode(c, pp.base, pp.cur, 3 * kDiffPageSize);
      REQUIRE(enc);
      if (pp.base == pp.cur) CHECK(enc->empty());
      Page page = pp.base;
      Status s = c.decode(*enc, page);
      INFO(s.ToString());
      REQUIRE(s.ok());
      CHECK(page == pp.cur);
      // The capacity limit is exact: the size itself fits, one less does not.
      CHECK(Encode(c, pp.base, pp.cur, enc->size()) == enc);
      if (!enc->empty()) CHECK(!Encode(c, pp.base, pp.cur, enc->size() - 1));
    }
  }
}

TEST_CASE("baselines: the worked examples of baseline_codecs.h", "[diff]") {
  Page base(kDiffPageSize, 0), cur = base;
  cur[0x10] = 0xAA;
  cur[0x11] = 0xBB;
  cur[0x12] = 0xCC;
  cur[0xFFF] = 0xDD;
  CHECK(Encode(kCodecs[0], base, cur, kDiffPageSize) ==
        Bytes{0x03, 0x80, 0xAA, 0xBB, 0xCC, 0x00, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F, 0x7F,
              0x79, 0x80, 0x00, 0x00, 0x00, 0xDD});
  CHECK(Encode(kCodecs[1], base, cur, kDiffPageSize) ==
        Bytes{0x10, 0x03, 0xAA, 0xBB, 0xCC, 0xEC, 0x1F, 0x01, 0xDD});
}

TEST_CASE("baselines: an every-byte change does not fit in a page", "[diff]") {
  Page base(kDiffPageSize, 0), cur(kDiffPageSize, 0xFF);
  CHECK(!Encode(kCodecs[0], base, cur, kDiffPageSize));
  CHECK(Encode(kCodecs[0], base, cur, 4104));  // 8 control bytes + 4096
  CHECK(!Encode(kCodecs[1], base, cur, kDiffPageSize));
  CHECK(Encode(kCodecs[1], base, cur, 4099));  // 00, 80 20, 4096 bytes
}

TEST_CASE("baselines: decoders reject a page of the wrong size", "[diff]") {
  for (const Codec& c : kCodecs) {
    Page small(100, 0);
    CHECK(c.decode(Bytes{}, small).code() == Errc::kInvalidArgument);
  }
}

TEST_CASE("XOR+RLE: decoder rejects malformed input", "[diff]") {
  const Codec& c = kCodecs[0];
  SECTION("zero runs past the page") {
    Bytes d(8, 0x7F);  // 1024 words: fine
    Page page(kDiffPageSize, 0);
    CHECK(c.decode(d, page).ok());
    d.push_back(0x00);  // word 1025
    RequireRejected(c, d);
  }
  SECTION("literal run past the page") {
    Bytes d(7, 0x7F);  // 896 words
    d.push_back(0x7F + 0x7F);  // 127 + 1 = 128 zero words: 1024
    d.push_back(0x80);         // one literal word more
    d.resize(d.size() + 4, 1);
    RequireRejected(c, d);
  }
  SECTION("truncated literal run") {
    RequireRejected(c, {0x80, 0x01, 0x02, 0x03});
    RequireRejected(c, {0x81, 0x01, 0x02, 0x03, 0x04, 0x05});
    RequireRejected(c, {0x80});
  }
}

TEST_CASE("XBZRLE: decoder rejects malformed input", "[diff]") {
  const Codec& c = kCodecs[1];
  SECTION("truncated length") {
    RequireRejected(c, {0x80});
    RequireRejected(c, {0x05});
    RequireRejected(c, {0x05, 0x81});
  }
  SECTION("length longer than 3 bytes") { RequireRejected(c, {0x80, 0x80, 0x80, 0x01, 0x01, 0xAA}); }
  SECTION("empty non-zero run") { RequireRejected(c, {0x05, 0x00}); }
  SECTION("empty zero run after the first group") {
    RequireRejected(c, {0x00, 0x01, 0xAA, 0x00, 0x01, 0xBB});
  }
  SECTION("group past the page end") {
    RequireRejected(c, {0x80, 0x20, 0x01, 0xAA});        // zrun 4096, nzrun 1
    RequireRejected(c, {0xFF, 0x1F, 0x02, 0xAA, 0xBB});  // zrun 4095, nzrun 2
    RequireRejected(c, {0xFF, 0xFF, 0x7F, 0x01, 0xAA});  // zrun 2^21 - 1
  }
  SECTION("truncated literal bytes") { RequireRejected(c, {0x00, 0x03, 0xAA, 0xBB}); }
  SECTION("the last byte of the page is accepted") {
    Page page(kDiffPageSize, 0);
    REQUIRE(c.decode(Bytes{0xFF, 0x1F, 0x01, 0xAA}, page).ok());
    CHECK(page[4095] == 0xAA);
  }
}

TEST_CASE("baselines: decoders survive random corruption", "[diff]") {
  std::mt19937_64 rng(31);
  const auto pairs = test::TestPagePairs(8);
  for (const Codec& c : kCodecs) {
    for (int iter = 0; iter < 3000; ++iter) {
      const auto& pp = pairs[rng() % pairs.size()];
      auto enc = Encode(c, pp.base, pp.cur, 3 * kDiffPageSize);
      REQUIRE(enc);
      Bytes d = *enc;
      if (d.empty()) continue;
      for (int f = 0; f < 1 + static_cast<int>(rng() % 3); ++f) d[rng() % d.size()] ^= uint8_t(1 + rng() % 255);
      if (rng() % 4 == 0) d.resize(rng() % (d.size() + 4), 0x01);
      Page page = pp.base;
      Status s = c.decode(d, page);
      if (!s.ok()) {
        REQUIRE(s.code() == Errc::kCorruption);
        REQUIRE(page == pp.base);
      }
    }
  }
}

}  // namespace
}  // namespace ftsync
