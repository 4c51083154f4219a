// The page delta: a 4 KiB page encoded against its base (the version the
// receiver already holds), in the smallest of four forms.
//
// Byte layout. All integers little-endian. The first byte is the kind; the
// whole encoding is exactly as long as its kind says (no padding, no trailing
// bytes).
//
//   kind 0x01 SAME     1 byte in all: the page equals its base.
//   kind 0x02 WHOLE    kind, then the 4096 bytes of the page (4097 in all).
//   kind 0x03 BLOCKS   kind
//                      shift   u8        log2 of the block size: 6, 7, 8
//                                        (64, 128, 256 bytes); N = 4096 >> shift
//                      mask    N/8 bytes bit i (byte i/8, bit i%8) set iff
//                                        block i is present (8, 4, 2 bytes)
//                      blocks  popcount(mask) * block size bytes: the new
//                                        contents of the present blocks, in
//                                        ascending block order
//   kind 0x04 RUNS     kind
//                      count   u16       number of runs, 0..2048
//                      count times:
//                        offset u16      first byte of the run in the page
//                        length u16      >= 1; offset + length <= 4096
//                        bytes  length   the new contents of the run
//                      Runs are in ascending offset order and do not overlap
//                      (offset >= previous offset + previous length).
//
// Worked example. Base: 4096 zero bytes. New page: base with bytes 0x10..0x12
// set to AA BB CC and byte 0xFFF set to DD.
//
//   RUNS (15 bytes, chosen):
//     04 | 02 00 | 10 00 03 00 AA BB CC | FF 0F 01 00 DD
//     kind  count  off=0x10 len=3 bytes   off=0xFFF len=1 byte
//
//   BLOCKS with 64-byte blocks (138 bytes): blocks 0 (bytes 0..63) and
//   63 (bytes 4032..4095) changed, so mask = bit 0 | bit 63:
//     03 | 06 | 01 00 00 00 00 00 00 80 | <64 bytes of block 0> | <64 bytes of block 63>
//     kind shift  mask (8 bytes LE)
//
//   WHOLE would be 4097 bytes; SAME does not apply.
//
// Choosing (DeltaFormat::kAuto): SAME if nothing changed, else the smaller of
// RUNS and BLOCKS (RUNS on a tie), else WHOLE when that delta would not be
// smaller than WHOLE (i.e. larger than the page). Runs separated by at most
// merge_gap unchanged bytes are merged: every gap of up to 4 bytes costs no
// more than the 4-byte header of a new run, so merge_gap 4 never makes RUNS
// larger and leaves fewer runs to apply. With merge_gap >= 4 we have not
// seen BLOCKS beat RUNS at any block size (2 million random and block-edge
// pages; every case of ftsync_diff_bench): kAuto then always picks RUNS, and
// BLOCKS is worth having for its lower CPU cost and for the shadow store's
// hash mode, which can only name changed blocks.
//
// The encoding does not name its base; the stream record that carries it
// must (the receiver applies a delta only to the exact version it was
// computed from).
#ifndef FTSYNC_SRC_DIFF_PAGE_DELTA_H_
#define FTSYNC_SRC_DIFF_PAGE_DELTA_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "diff/block_compare.h"
#include "ftsync/status.h"

namespace ftsync::internal {

enum class DeltaKind : uint8_t { kSame = 0x01, kWhole = 0x02, kBlocks = 0x03, kRuns = 0x04 };

const char* DeltaKindName(DeltaKind k);

// Sizes of the fixed parts.
inline constexpr size_t kDeltaSameSize = 1;
inline constexpr size_t kDeltaWholeSize = 1 + kDiffPageSize;
inline constexpr size_t kDeltaRunsHeader = 3;  // kind + count
inline constexpr size_t kDeltaRunHeader = 4;   // offset + length
// The most an encoder writes: WHOLE.
inline constexpr size_t kMaxDeltaSize = kDeltaWholeSize;

// Size of a BLOCKS encoding of `popcount` blocks of size `bs`.
inline constexpr size_t BlocksDeltaSize(size_t popcount, BlockSize bs) {
  return 2 + BlocksPerPage(bs) / 8 + popcount * BlockBytes(bs);
}

// Which encodings the encoder may use (SAME and WHOLE always may be).
enum class DeltaFormat : uint8_t {
  kAuto,    // the smaller of RUNS and BLOCKS
  kBlocks,  // BLOCKS only (cheapest to compute: no byte masks, no runs)
  kRuns,    // RUNS only
};

struct DeltaOptions {
  DeltaFormat format = DeltaFormat::kAuto;
  BlockSize block_size = BlockSize::k64;  // for BLOCKS
  uint16_t merge_gap = 4;                 // for RUNS; see above
};

struct EncodedDelta {
  DeltaKind kind;
  size_t size;  // bytes written to `out`
};

// Encodes `cur` against `base` (each kDiffPageSize bytes) into `out`.
// Writes only inside `out`; bytes past the returned size may be scratch.
EncodedDelta EncodePageDelta(const uint8_t* base, const uint8_t* cur, const DeltaOptions& options,
                             std::span<uint8_t, kMaxDeltaSize> out);

// Encodes the blocks of `cur` selected by `mask` (bits of blocks of size
// `bs`): SAME for an empty mask, BLOCKS, or WHOLE when BLOCKS would not be
// smaller. For callers that found the changed blocks by other means (the
// shadow store's hash mode).
EncodedDelta EncodeBlocksDelta(const uint8_t* cur, uint64_t mask, BlockSize bs,
                               std::span<uint8_t, kMaxDeltaSize> out);

// Applies `delta` to `page` (kDiffPageSize bytes holding the base; on
// success it holds the new version). The whole delta is checked before the
// first byte of `page` is written, so on error `page` is unchanged; nothing
// is read or written outside the two spans.
//   kInvalidArgument  page.size() != kDiffPageSize
//   kCorruption       empty, unknown kind, bad block shift, truncated or
//                     overlong input, a run of length 0, a run past the page
//                     end, runs out of order or overlapping
Status ApplyPageDelta(std::span<const uint8_t> delta, std::span<uint8_t> page);

// The checks of ApplyPageDelta without a page: OK iff ApplyPageDelta would
// accept `delta` (the stream's structural check, rule D3).
Status CheckPageDelta(std::span<const uint8_t> delta);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_DIFF_PAGE_DELTA_H_
