// Encoding and checking of the 48-byte stream header
// (stream-format.md, "Stream header", rules H1-H8).
#ifndef FTSYNC_SRC_STREAM_STREAM_HEADER_H_
#define FTSYNC_SRC_STREAM_STREAM_HEADER_H_

#include <array>
#include <cstdint>

#include "ftsync/status.h"
#include "stream/format.h"

namespace ftsync::internal {

struct StreamHeader {
  uint32_t version = kVersion;
  bool back_channel = false;
  uint32_t page_size = 4096;
  uint64_t frame_count = 0;
  uint64_t session = 0;
};

std::array<uint8_t, kStreamHeaderSize> EncodeStreamHeader(const StreamHeader& h);

// Checks H1-H7 and the direction half of H8; `expect_back_channel` is the
// direction the reader expects.
Result<StreamHeader> ParseStreamHeader(const uint8_t* bytes, bool expect_back_channel);

// The rest of H8: a back-channel header must echo the forward header.
Status CheckEchoedHeader(const StreamHeader& forward, const StreamHeader& back);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_STREAM_HEADER_H_
