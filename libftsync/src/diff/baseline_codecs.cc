// XOR+RLE and XBZRLE (layouts in baseline_codecs.h). Plain portable code:
// they are the baselines, tuned as a careful implementer of the published
// description would (word-at-a-time scanning), not vectorised.
#include "diff/baseline_codecs.h"

#include <bit>
#include <cstring>
#include <string>

namespace ftsync::internal {
namespace {

// The word scans map byte k of a loaded word to bits 8k..8k+7.
static_assert(std::endian::native == std::endian::little, "word scans assume little-endian");

constexpr size_t kWords = kDiffPageSize / 4;
constexpr size_t kMaxTokenWords = 128;

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

Status BadPage(const char* codec, size_t size) {
  return Status(Errc::kInvalidArgument, std::string(codec) + ": page of " + std::to_string(size) +
                                            " bytes, expected " + std::to_string(kDiffPageSize));
}

Status Corrupt(const char* codec, const std::string& what) {
  return Status(Errc::kCorruption, std::string(codec) + ": " + what);
}

// Bit k set iff byte k of x is zero.
inline uint64_t ZeroBytes(uint64_t x) {
  constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full;
  uint64_t nz = (((x & kLow7) + kLow7) | x) & ~kLow7;
  return ((~nz & ~kLow7) >> 7) * 0x0102040810204080ull >> 56;
}

// First index >= i where a and b differ (kDiffPageSize if none).
inline size_t SkipEqual(const uint8_t* a, const uint8_t* b, size_t i) {
  while (i < kDiffPageSize && (i & 7)) {
    if (a[i] != b[i]) return i;
    ++i;
  }
  for (; i < kDiffPageSize; i += 8) {
    uint64_t x = Load64(a + i) ^ Load64(b + i);
    if (x) return i + static_cast<size_t>(__builtin_ctzll(x)) / 8;
  }
  return kDiffPageSize;
}

// First index >= i where a and b are equal (kDiffPageSize if none).
inline size_t SkipDiffering(const uint8_t* a, const uint8_t* b, size_t i) {
  while (i < kDiffPageSize && (i & 7)) {
    if (a[i] == b[i]) return i;
    ++i;
  }
  for (; i < kDiffPageSize; i += 8) {
    uint64_t z = ZeroBytes(Load64(a + i) ^ Load64(b + i));
    if (z) return i + static_cast<size_t>(__builtin_ctzll(z));
  }
  return kDiffPageSize;
}

inline size_t PutUleb(uint8_t* p, size_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = static_cast<uint8_t>(v | 0x80);
    v >>= 7;
  }
  p[n++] = static_cast<uint8_t>(v);
  return n;
}

// Reads a ULEB128 of at most 3 bytes at in[*pos]; false if truncated or
// longer. Values up to 2^21-1 (callers bound them by the page size).
inline bool GetUleb(const uint8_t* in, size_t size, size_t* pos, size_t* v) {
  size_t value = 0;
  for (int i = 0; i < 3; ++i) {
    if (*pos >= size) return false;
    uint8_t byte = in[(*pos)++];
    value |= static_cast<size_t>(byte & 0x7F) << (7 * i);
    if (!(byte & 0x80)) {
      *v = value;
      return true;
    }
  }
  return false;
}

}  // namespace

std::optional<size_t> XorRleEncode(const uint8_t* base, const uint8_t* cur,
                                   std::span<uint8_t> out) {
  uint8_t* o = out.data();
  const size_t cap = out.size();
  size_t n = 0;
  size_t w = 0;
  while (w < kWords) {
    const size_t z = SkipEqual(base, cur, 4 * w) / 4;  // next word with a change
    if (z == kWords) break;  // trailing zero run: omitted
    for (size_t left = z - w; left > 0;) {
      size_t k = left < kMaxTokenWords ? left : kMaxTokenWords;
      if (n + 1 > cap) return std::nullopt;
      o[n++] = static_cast<uint8_t>(k - 1);
      left -= k;
    }
    w = z;
    size_t e = w;
    while (e < kWords && e - w < kMaxTokenWords && Load32(base + 4 * e) != Load32(cur + 4 * e)) ++e;
    size_t k = e - w;
    if (n + 1 + 4 * k > cap) return std::nullopt;
    o[n++] = static_cast<uint8_t>(0x7F + k);
    for (size_t i = w; i < e; ++i) {
      uint32_t x = Load32(base + 4 * i) ^ Load32(cur + 4 * i);
      std::memcpy(o + n, &x, 4);
      n += 4;
    }
    w = e;
  }
  return n;
}

Status XorRleDecode(std::span<const uint8_t> in, std::span<uint8_t> page) {
  constexpr const char* kCodec = "XOR+RLE";
  if (page.size() != kDiffPageSize) return BadPage(kCodec, page.size());
  const uint8_t* p = in.data();
  const size_t size = in.size();
  // Check pass.
  size_t pos = 0;
  size_t words = 0;
  while (pos < size) {
    uint8_t c = p[pos++];
    size_t k = c < 0x80 ? c + 1u : c - 0x7Fu;
    if (words + k > kWords)
      return Corrupt(kCodec, "token at byte " + std::to_string(pos - 1) + " covers words " +
                                 std::to_string(words) + ".." + std::to_string(words + k - 1) +
                                 ", past the page's " + std::to_string(kWords));
    if (c >= 0x80) {
      if (size - pos < 4 * k)
        return Corrupt(kCodec, "literal run at byte " + std::to_string(pos - 1) + " truncated: " +
                                   std::to_string(4 * k) + " bytes needed, " +
                                   std::to_string(size - pos) + " left");
      pos += 4 * k;
    }
    words += k;
  }
  // Apply pass.
  uint8_t* dst = page.data();
  pos = 0;
  words = 0;
  while (pos < size) {
    uint8_t c = p[pos++];
    if (c < 0x80) {
      words += c + 1u;
      continue;
    }
    size_t k = c - 0x7Fu;
    for (size_t i = 0; i < 4 * k; ++i) dst[4 * words + i] ^= p[pos + i];
    pos += 4 * k;
    words += k;
  }
  return Status::OK();
}

std::optional<size_t> XbzrleEncode(const uint8_t* base, const uint8_t* cur,
                                   std::span<uint8_t> out) {
  uint8_t* o = out.data();
  const size_t cap = out.size();
  size_t n = 0;
  size_t i = 0;
  while (i < kDiffPageSize) {
    size_t nz = SkipEqual(base, cur, i);
    if (nz == kDiffPageSize) break;  // trailing unchanged bytes: omitted
    size_t end = SkipDiffering(base, cur, nz + 1);
    size_t len = end - nz;
    if (n + 3 + 3 + len > cap) {
      // Close to the end of `out`: compute the exact size before failing.
      uint8_t tmp[6];
      size_t h = PutUleb(tmp, nz - i);
      h += PutUleb(tmp + h, len);
      if (n + h + len > cap) return std::nullopt;
    }
    n += PutUleb(o + n, nz - i);
    n += PutUleb(o + n, len);
    // Short runs: one fixed 16-byte move (as page_delta.cc does, for a fair
    // comparison); bytes past n are scratch.
    if (len <= 16 && cap - n >= 16 && kDiffPageSize - nz >= 16)
      std::memcpy(o + n, cur + nz, 16);
    else
      std::memcpy(o + n, cur + nz, len);
    n += len;
    i = end;
  }
  return n;
}

Status XbzrleDecode(std::span<const uint8_t> in, std::span<uint8_t> page) {
  constexpr const char* kCodec = "XBZRLE";
  if (page.size() != kDiffPageSize) return BadPage(kCodec, page.size());
  const uint8_t* p = in.data();
  const size_t size = in.size();
  for (int pass = 0; pass < 2; ++pass) {  // 0: check, 1: apply
    size_t pos = 0;
    size_t off = 0;
    while (pos < size) {
      size_t group_at = pos;
      size_t zrun, nzrun;
      if (!GetUleb(p, size, &pos, &zrun))
        return Corrupt(kCodec, "zero-run length at byte " + std::to_string(group_at) +
                                   " truncated or longer than 3 bytes");
      if (zrun == 0 && group_at != 0)
        return Corrupt(kCodec, "empty zero run at byte " + std::to_string(group_at));
      size_t nz_at = pos;
      if (!GetUleb(p, size, &pos, &nzrun))
        return Corrupt(kCodec, "non-zero-run length at byte " + std::to_string(nz_at) +
                                   " truncated or longer than 3 bytes");
      if (nzrun == 0) return Corrupt(kCodec, "empty non-zero run at byte " + std::to_string(nz_at));
      if (zrun > kDiffPageSize - off || nzrun > kDiffPageSize - off - zrun)
        return Corrupt(kCodec, "group at byte " + std::to_string(group_at) + " (zero run " +
                                   std::to_string(zrun) + ", non-zero run " +
                                   std::to_string(nzrun) + ") ends past the page, at offset " +
                                   std::to_string(off + zrun + nzrun));
      if (size - pos < nzrun)
        return Corrupt(kCodec, "non-zero run at byte " + std::to_string(nz_at) + " truncated: " +
                                   std::to_string(nzrun) + " bytes needed, " +
                                   std::to_string(size - pos) + " left");
      off += zrun;
      if (pass == 1) std::memcpy(page.data() + off, p + pos, nzrun);
      off += nzrun;
      pos += nzrun;
    }
  }
  return Status::OK();
}

}  // namespace ftsync::internal
