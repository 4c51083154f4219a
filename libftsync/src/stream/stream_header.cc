#include "stream/stream_header.h"

#include <xxhash.h>

#include <cstring>

namespace ftsync::internal {
namespace {

Status Bad(Errc code, const char* rule, const std::string& what) {
  return Status(code, std::string("[") + rule + "] stream header: " + what);
}

}  // namespace

std::array<uint8_t, kStreamHeaderSize> EncodeStreamHeader(const StreamHeader& h) {
  std::array<uint8_t, kStreamHeaderSize> b{};
  std::memcpy(b.data(), kMagic, 8);
  PutLE32(&b[8], h.version);
  PutLE32(&b[12], h.back_channel ? kFlagBackChannel : 0);
  PutLE32(&b[16], h.page_size);
  PutLE32(&b[20], 0);
  PutLE64(&b[24], h.frame_count);
  PutLE64(&b[32], h.session);
  PutLE64(&b[40], XXH3_64bits(b.data(), 40));
  return b;
}

Result<StreamHeader> ParseStreamHeader(const uint8_t* b, bool expect_back_channel) {
  if (std::memcmp(b, kMagic, 8) != 0)
    return Bad(Errc::kCorruption, "H1", "bad magic: not an ftsync stream");
  StreamHeader h;
  h.version = GetLE32(b + 8);
  if (h.version != kVersion)
    return Bad(Errc::kVersion, "H2",
               "peer speaks stream version " + std::to_string(h.version) +
                   ", this ftsync speaks version " + std::to_string(kVersion));
  if (GetLE64(b + 40) != XXH3_64bits(b, 40))
    return Bad(Errc::kCorruption, "H3", "checksum mismatch");
  uint32_t flags = GetLE32(b + 12);
  if ((flags & ~kFlagBackChannel) != 0 || GetLE32(b + 20) != 0)
    return Bad(Errc::kCorruption, "H4", "reserved flag or field is non-zero");
  h.back_channel = (flags & kFlagBackChannel) != 0;
  h.page_size = GetLE32(b + 16);
  if (h.page_size < kMinPageSize || h.page_size > kMaxPageSize ||
      (h.page_size & (h.page_size - 1)) != 0)
    return Bad(Errc::kCorruption, "H5",
               "page_size " + std::to_string(h.page_size) +
                   " is not a power of two in 4096..65536");
  h.frame_count = GetLE64(b + 24);
  if (h.frame_count == 0 || h.frame_count > kMaxFrameCount)
    return Bad(Errc::kCorruption, "H6",
               "frame_count " + std::to_string(h.frame_count) + " out of range 1..2^40");
  h.session = GetLE64(b + 32);
  if (h.session == 0) return Bad(Errc::kCorruption, "H7", "session is 0");
  if (h.back_channel != expect_back_channel)
    return Bad(Errc::kProtocol, "H8",
               expect_back_channel ? "expected a back-channel header, got a forward one"
                                   : "expected a forward header, got a back-channel one");
  return h;
}

Status CheckEchoedHeader(const StreamHeader& f, const StreamHeader& b) {
  if (f.page_size != b.page_size || f.frame_count != b.frame_count ||
      f.session != b.session)
    return Bad(Errc::kProtocol, "H8",
               "back channel does not echo the forward header (session/page size/frames)");
  return Status::OK();
}

}  // namespace ftsync::internal
