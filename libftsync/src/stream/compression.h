// The codecs of the COMPRESSED record (stream-format.md, "COMPRESSED"):
// zlib and zstd over one record body. The decoder enforces C4 itself: it
// never produces more than the size the record announces, and fails unless
// the data is exactly one complete zlib stream / zstd frame of that size.
#ifndef FTSYNC_SRC_STREAM_COMPRESSION_H_
#define FTSYNC_SRC_STREAM_COMPRESSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ftsync/status.h"

namespace ftsync::internal {

// Wire values of the codec byte. kNone is never on the wire: it means
// "send records plain".
enum class Codec : uint8_t { kNone = 0, kZlib = 1, kZstd = 2 };

const char* CodecName(Codec c);
// True for the codecs a COMPRESSED record may carry (1 and 2).
bool IsWireCodec(uint8_t codec);
// Levels: zlib 1..9, zstd 1..19; 0 picks the codec's default for ftsync
// (zlib 1, zstd 1: the fast end, see bench/README.md).
Status CheckCodecLevel(Codec c, int level);

// A compressor that keeps its codec context between calls (one per writer).
class Compressor {
 public:
  static Result<std::unique_ptr<Compressor>> Create(Codec codec, int level);
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // Compresses `in` into `out` (resized to the compressed length). Returns
  // false, leaving `out` unspecified, when the result would not be shorter
  // than `limit` bytes (the caller then sends the body plain).
  Result<bool> Compress(std::span<const uint8_t> in, size_t limit, std::vector<uint8_t>* out);

  Codec codec() const { return codec_; }
  int level() const { return level_; }

 private:
  Compressor(Codec codec, int level);
  Codec codec_;
  int level_;
  struct State;
  std::unique_ptr<State> state_;
};

// Decompresses `in` (codec `codec`, 1 or 2) into exactly out.size() bytes.
// kCorruption "[C4] ..." if the data is not one complete stream/frame of
// exactly that size; never writes outside `out`.
Status Decompress(uint8_t codec, std::span<const uint8_t> in, std::span<uint8_t> out);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_COMPRESSION_H_
