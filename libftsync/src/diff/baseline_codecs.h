// The two baseline page encoders that ftsync's deltas are measured against,
// written from their published descriptions (shared/design/BRIEF.md), not
// from Xen's or QEMU's code. Both encode a 4 KiB page against the copy the
// receiver holds and decode onto that copy.
//
// XOR+RLE (Remus checkpoint compression, Xen 2011-2019: XOR against the last
// sent copy, run-length encoding in 4-byte words). Our layout: the page is
// 1024 words; X = new XOR base, word by word. A sequence of tokens, each
// starting with a control byte c:
//   c in 0x00..0x7F  zero run: the next c+1 words of X are zero (unchanged)
//   c in 0x80..0xFF  literal run: c-0x7F words follow, 4 bytes each, the
//                    bytes of X (the decoder XORs them onto the base)
// Tokens cover the words in order; a trailing zero run is omitted, so the
// empty encoding means "unchanged"; the tokens may not cover more than 1024
// words.
//
// XBZRLE (QEMU migration: XOR against a cached previous version, zero-run /
// non-zero-run lengths as ULEB128, non-zero bytes literal). Our layout: groups
//   zrun   ULEB128   bytes unchanged (XOR zero); 0 only in the first group
//   nzrun  ULEB128   >= 1 bytes changed (XOR non-zero)
//   bytes  nzrun     the new values of those bytes
// A trailing unchanged run is omitted (the empty encoding means
// "unchanged"). ULEB128: 7 bits per byte, least significant first, high bit
// set on every byte but the last; at most 2 bytes for lengths <= 4096.
//
// Worked example (base all zero; new: bytes 0x10..0x12 = AA BB CC, 0xFFF = DD):
//   XOR+RLE (19 bytes): 03 | 80 AA BB CC 00 | 7F 7F 7F 7F 7F 7F 7F 79 | 80 00 00 00 DD
//                       4 zero words, 1 literal word, 1018 zero words, 1 literal word
//   XBZRLE (9 bytes):   10 03 AA BB CC | EC 1F 01 DD
//                       zrun 16, nzrun 3, bytes; zrun 4076, nzrun 1, byte
//
// Encoders write only inside `out` (bytes past the returned size may be
// scratch) and return nullopt when the encoding would not fit (callers
// pass a page-sized buffer and send the page whole instead, as both systems
// did). Decoders check all input before writing: on error `page` is
// unchanged; kCorruption for malformed input, kInvalidArgument for a page
// span that is not kDiffPageSize bytes.
#ifndef FTSYNC_SRC_DIFF_BASELINE_CODECS_H_
#define FTSYNC_SRC_DIFF_BASELINE_CODECS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "diff/block_compare.h"
#include "ftsync/status.h"

namespace ftsync::internal {

std::optional<size_t> XorRleEncode(const uint8_t* base, const uint8_t* cur, std::span<uint8_t> out);
Status XorRleDecode(std::span<const uint8_t> in, std::span<uint8_t> page);

std::optional<size_t> XbzrleEncode(const uint8_t* base, const uint8_t* cur, std::span<uint8_t> out);
Status XbzrleDecode(std::span<const uint8_t> in, std::span<uint8_t> page);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_DIFF_BASELINE_CODECS_H_
