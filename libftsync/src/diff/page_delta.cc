// The page delta encoder and its checking decoder (layout in page_delta.h).
#include "diff/page_delta.h"

#include <cstdio>
#include <cstring>
#include <string>

namespace ftsync::internal {
namespace {

inline void PutLE16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline uint16_t GetLE16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}

// Copies n bytes where up to 16 bytes may be read from `src` and written to
// `dst` (`src_room`, `dst_room` bytes available): one fixed-size move instead
// of a library call for the short runs scattered writes produce. Encoders
// only: the bytes written past n are scratch space of the output.
inline void CopyRun(uint8_t* dst, size_t dst_room, const uint8_t* src, size_t src_room, size_t n) {
  if (n <= 16 && dst_room >= 16 && src_room >= 16)
    std::memcpy(dst, src, 16);
  else
    std::memcpy(dst, src, n);
}

inline size_t Popcount(uint64_t m) { return static_cast<size_t>(__builtin_popcountll(m)); }

size_t RunsSize(const ByteRun* runs, size_t n) {
  size_t size = kDeltaRunsHeader + kDeltaRunHeader * n;
  for (size_t i = 0; i < n; ++i) size += runs[i].length;
  return size;
}

EncodedDelta WriteSame(uint8_t* out) {
  out[0] = static_cast<uint8_t>(DeltaKind::kSame);
  return {DeltaKind::kSame, kDeltaSameSize};
}

EncodedDelta WriteWhole(const uint8_t* cur, uint8_t* out) {
  out[0] = static_cast<uint8_t>(DeltaKind::kWhole);
  std::memcpy(out + 1, cur, kDiffPageSize);
  return {DeltaKind::kWhole, kDeltaWholeSize};
}

// Requires BlocksDeltaSize(popcount(mask), bs) <= kMaxDeltaSize.
EncodedDelta WriteBlocks(const uint8_t* cur, uint64_t mask, BlockSize bs, uint8_t* out) {
  const size_t bytes = BlockBytes(bs);
  const size_t mask_bytes = BlocksPerPage(bs) / 8;
  uint8_t* p = out;
  *p++ = static_cast<uint8_t>(DeltaKind::kBlocks);
  *p++ = static_cast<uint8_t>(BlockShift(bs));
  for (size_t i = 0; i < mask_bytes; ++i) *p++ = static_cast<uint8_t>(mask >> (8 * i));
  for (uint64_t m = mask; m; m &= m - 1) {
    size_t block = static_cast<size_t>(__builtin_ctzll(m));
    std::memcpy(p, cur + block * bytes, bytes);
    p += bytes;
  }
  return {DeltaKind::kBlocks, static_cast<size_t>(p - out)};
}

// Requires RunsSize(runs, n) <= kMaxDeltaSize.
EncodedDelta WriteRuns(const uint8_t* cur, const ByteRun* runs, size_t n, uint8_t* out) {
  uint8_t* p = out;
  uint8_t* const end = out + kMaxDeltaSize;
  *p++ = static_cast<uint8_t>(DeltaKind::kRuns);
  PutLE16(p, static_cast<uint16_t>(n));
  p += 2;
  for (size_t i = 0; i < n; ++i) {
    PutLE16(p, runs[i].offset);
    PutLE16(p + 2, runs[i].length);
    CopyRun(p + 4, static_cast<size_t>(end - (p + 4)), cur + runs[i].offset,
            kDiffPageSize - runs[i].offset, runs[i].length);
    p += kDeltaRunHeader + runs[i].length;
  }
  return {DeltaKind::kRuns, static_cast<size_t>(p - out)};
}

Status CheckLength(const char* kind, size_t have, size_t want) {
  if (have < want)
    return Status(Errc::kCorruption, std::string("page delta: ") + kind + ": truncated: " +
                                         std::to_string(have) + " bytes, needs " +
                                         std::to_string(want));
  if (have > want)
    return Status(Errc::kCorruption, std::string("page delta: ") + kind + ": overlong: " +
                                         std::to_string(have) + " bytes, needs " +
                                         std::to_string(want));
  return Status::OK();
}

}  // namespace

const char* DeltaKindName(DeltaKind k) {
  switch (k) {
    case DeltaKind::kSame:
      return "SAME";
    case DeltaKind::kWhole:
      return "WHOLE";
    case DeltaKind::kBlocks:
      return "BLOCKS";
    case DeltaKind::kRuns:
      return "RUNS";
  }
  return "unknown";
}

EncodedDelta EncodeBlocksDelta(const uint8_t* cur, uint64_t mask, BlockSize bs,
                               std::span<uint8_t, kMaxDeltaSize> out) {
  if (mask == 0) return WriteSame(out.data());
  if (BlocksDeltaSize(Popcount(mask), bs) >= kDeltaWholeSize) return WriteWhole(cur, out.data());
  return WriteBlocks(cur, mask, bs, out.data());
}

EncodedDelta EncodePageDelta(const uint8_t* base, const uint8_t* cur, const DeltaOptions& options,
                             std::span<uint8_t, kMaxDeltaSize> out) {
  const BlockSize bs = options.block_size;
  if (options.format == DeltaFormat::kBlocks)
    return EncodeBlocksDelta(cur, ChangedBlocks(base, cur, bs), bs, out);

  uint64_t masks[kMaskWords];
  uint64_t mask64 = ByteDiffMasks(base, cur, masks);
  if (mask64 == 0) return WriteSame(out.data());
  ByteRun runs[kMaxRuns];
  size_t n = ExtractRuns(std::span<const uint64_t, kMaskWords>(masks), mask64, options.merge_gap,
                         std::span<ByteRun, kMaxRuns>(runs));
  size_t runs_size = RunsSize(runs, n);
  if (options.format == DeltaFormat::kAuto) {
    uint64_t mask = FoldBlockMask(mask64, bs);
    if (BlocksDeltaSize(Popcount(mask), bs) < runs_size)
      return EncodeBlocksDelta(cur, mask, bs, out);
  }
  if (runs_size >= kDeltaWholeSize) return WriteWhole(cur, out.data());
  return WriteRuns(cur, runs, n, out.data());
}

namespace {

// Checks `delta` whole, then, if `dst` is not null, applies it to dst.
Status Decode(std::span<const uint8_t> delta, uint8_t* dst) {
  if (delta.empty()) return Status(Errc::kCorruption, "page delta: empty");
  const uint8_t* in = delta.data();
  const size_t size = delta.size();

  switch (static_cast<DeltaKind>(in[0])) {
    case DeltaKind::kSame:
      return CheckLength("SAME", size, kDeltaSameSize);

    case DeltaKind::kWhole:
      FTSYNC_RETURN_IF_ERROR(CheckLength("WHOLE", size, kDeltaWholeSize));
      if (dst) std::memcpy(dst, in + 1, kDiffPageSize);
      return Status::OK();

    case DeltaKind::kBlocks: {
      if (size < 2) return CheckLength("BLOCKS", size, 2);
      const unsigned shift = in[1];
      if (shift < 6 || shift > 8)
        return Status(Errc::kCorruption, "page delta: BLOCKS: block shift " +
                                             std::to_string(shift) + " not in 6..8");
      const size_t bytes = size_t{1} << shift;
      const size_t mask_bytes = (kDiffPageSize >> shift) / 8;
      if (size < 2 + mask_bytes) return CheckLength("BLOCKS", size, 2 + mask_bytes);
      uint64_t mask = 0;
      for (size_t i = 0; i < mask_bytes; ++i) mask |= uint64_t{in[2 + i]} << (8 * i);
      FTSYNC_RETURN_IF_ERROR(CheckLength("BLOCKS", size, 2 + mask_bytes + Popcount(mask) * bytes));
      if (!dst) return Status::OK();
      const uint8_t* p = in + 2 + mask_bytes;
      for (uint64_t m = mask; m; m &= m - 1) {
        std::memcpy(dst + static_cast<size_t>(__builtin_ctzll(m)) * bytes, p, bytes);
        p += bytes;
      }
      return Status::OK();
    }

    case DeltaKind::kRuns: {
      if (size < kDeltaRunsHeader) return CheckLength("RUNS", size, kDeltaRunsHeader);
      const size_t count = GetLE16(in + 1);
      // Check pass: every header in bounds, every run inside the page and
      // after the previous one, the input consumed exactly.
      size_t pos = kDeltaRunsHeader;
      size_t prev_end = 0;
      for (size_t i = 0; i < count; ++i) {
        if (size - pos < kDeltaRunHeader)
          return Status(Errc::kCorruption, "page delta: RUNS: truncated in the header of run " +
                                               std::to_string(i) + " of " + std::to_string(count));
        const size_t off = GetLE16(in + pos);
        const size_t len = GetLE16(in + pos + 2);
        if (len == 0)
          return Status(Errc::kCorruption,
                        "page delta: RUNS: run " + std::to_string(i) + " has length 0");
        if (off < prev_end)
          return Status(Errc::kCorruption, "page delta: RUNS: run " + std::to_string(i) +
                                               " at offset " + std::to_string(off) +
                                               " overlaps or precedes the previous run (ends at " +
                                               std::to_string(prev_end) + ")");
        if (off + len > kDiffPageSize)
          return Status(Errc::kCorruption, "page delta: RUNS: run " + std::to_string(i) +
                                               " [" + std::to_string(off) + ", +" +
                                               std::to_string(len) + ") ends past the page");
        if (size - pos - kDeltaRunHeader < len)
          return Status(Errc::kCorruption, "page delta: RUNS: truncated in the bytes of run " +
                                               std::to_string(i) + " of " + std::to_string(count));
        pos += kDeltaRunHeader + len;
        prev_end = off + len;
      }
      if (pos != size)
        return Status(Errc::kCorruption, "page delta: RUNS: overlong: " + std::to_string(size - pos) +
                                             " bytes after run " + std::to_string(count));
      if (!dst) return Status::OK();
      // Apply pass.
      pos = kDeltaRunsHeader;
      for (size_t i = 0; i < count; ++i) {
        const size_t off = GetLE16(in + pos);
        const size_t len = GetLE16(in + pos + 2);
        std::memcpy(dst + off, in + pos + kDeltaRunHeader, len);
        pos += kDeltaRunHeader + len;
      }
      return Status::OK();
    }
  }
  char kind[8];
  std::snprintf(kind, sizeof kind, "0x%02x", in[0]);
  return Status(Errc::kCorruption, std::string("page delta: unknown kind ") + kind);
}

}  // namespace

Status ApplyPageDelta(std::span<const uint8_t> delta, std::span<uint8_t> page) {
  if (page.size() != kDiffPageSize)
    return Status(Errc::kInvalidArgument, "page delta: page of " + std::to_string(page.size()) +
                                              " bytes, expected " + std::to_string(kDiffPageSize));
  return Decode(delta, page.data());
}

Status CheckPageDelta(std::span<const uint8_t> delta) { return Decode(delta, nullptr); }

}  // namespace ftsync::internal
