// The constants of the replication stream, version 1. The normative
// definition is libftsync/doc/stream-format.md; each constant here names the
// section it comes from.
#ifndef FTSYNC_SRC_STREAM_FORMAT_H_
#define FTSYNC_SRC_STREAM_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace ftsync::internal {

// "Stream header"
inline constexpr uint8_t kMagic[8] = {'F', 'T', 'S', 'Y', 'N', 'C', '\r', '\n'};
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kStreamHeaderSize = 48;
inline constexpr uint32_t kFlagBackChannel = 1u << 0;
inline constexpr uint32_t kMinPageSize = 4096;
inline constexpr uint32_t kMaxPageSize = 65536;
inline constexpr uint64_t kMaxFrameCount = uint64_t{1} << 40;

// "Record header"
inline constexpr size_t kRecordHeaderSize = 16;
inline constexpr uint32_t kOptionalBit = 1u << 31;

// "Record types"
enum RecordType : uint32_t {
  kEpochBegin = 0x1,
  kPageData = 0x2,
  kDeviceState = 0x3,
  kEpochCommit = 0x4,
  kHeartbeat = 0x5,
  kEnd = 0x6,
  kPageDelta = 0x10,
  kSpecPageData = 0x11,
  kHashList = 0x12,       // reserved
  kZeroPages = 0x13,      // reserved
  kCompressed = 0x14,
  kSpecApply = 0x15,
  kAck = 0x101,
  kNack = 0x102,
};

inline constexpr size_t kPageDataMaxBytes = 4u << 20;  // count * page_size
inline constexpr size_t kDeviceStateMax = 64u << 20;
// "PAGE_DELTA"
inline constexpr uint32_t kPageDeltaPageSize = 4096;
inline constexpr uint32_t kPageDeltaMaxCount = 1024;
inline constexpr size_t kPageDeltaEntryHeader = 18;  // pfn, base, length
inline constexpr size_t kPageDeltaMaxEncoding = 1 + kPageDeltaPageSize;  // WHOLE
// "SPEC_APPLY"
inline constexpr uint32_t kSpecApplyMaxCount = 65536;
// "COMPRESSED"
inline constexpr size_t kCompressedHeader = 24;
inline constexpr size_t kNackMessageMax = 1024;
inline constexpr uint64_t kNoEpoch = ~uint64_t{0};

// NACK reasons.
enum NackReason : uint32_t {
  kNackCorruption = 1,
  kNackProtocol = 2,
  kNackVersion = 3,
  kNackNoSpace = 4,
  kNackIo = 5,
  kNackOther = 6,
};

// Name of a known type ("PAGE_DATA"), or "type 0x..." for others.
std::string RecordTypeName(uint32_t type);
// True for the types version 1 defines (reserved numbers are unknown).
bool IsKnownType(uint32_t type);
// True if a known type may appear on the given direction.
bool TypeAllowedOn(uint32_t type, bool back_channel);
// True for the types a COMPRESSED record may wrap.
bool IsCompressibleType(uint32_t type);
// Maximum body length of a known type, for the given page size.
size_t MaxBodyLength(uint32_t type, uint32_t page_size);

inline size_t PaddedLength(size_t n) { return (n + 7) & ~size_t{7}; }

// Little-endian put/get; the stream never depends on host byte order.
inline void PutLE32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void PutLE64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint32_t GetLE32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
inline uint64_t GetLE64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Record checksum: XXH3-64 of the body with seed type | length << 32.
uint64_t RecordChecksum(uint32_t type, const uint8_t* body, size_t length);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_FORMAT_H_
