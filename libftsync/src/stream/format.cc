#include "stream/format.h"

#include <xxhash.h>

#include <cstdio>

namespace ftsync::internal {

std::string RecordTypeName(uint32_t type) {
  switch (type) {
    case kEpochBegin: return "EPOCH_BEGIN";
    case kPageData: return "PAGE_DATA";
    case kDeviceState: return "DEVICE_STATE";
    case kEpochCommit: return "EPOCH_COMMIT";
    case kHeartbeat: return "HEARTBEAT";
    case kEnd: return "END";
    case kPageDelta: return "PAGE_DELTA";
    case kCompressed: return "COMPRESSED";
    case kSpecPageData: return "SPEC_PAGE_DATA";
    case kSpecApply: return "SPEC_APPLY";
    case kAck: return "ACK";
    case kNack: return "NACK";
    default: break;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "type 0x%08x", type);
  return buf;
}

bool IsKnownType(uint32_t type) {
  switch (type) {
    case kEpochBegin: case kPageData: case kDeviceState: case kEpochCommit:
    case kHeartbeat: case kEnd: case kAck: case kNack: case kPageDelta: case kCompressed:
    case kSpecPageData: case kSpecApply:
      return true;
    default:
      return false;
  }
}

bool TypeAllowedOn(uint32_t type, bool back_channel) {
  switch (type) {
    case kHeartbeat: case kEnd: return true;
    case kAck: case kNack: return back_channel;
    default: return !back_channel;
  }
}

bool IsCompressibleType(uint32_t type) {
  return type == kPageData || type == kPageDelta || type == kSpecPageData || type == kDeviceState;
}

size_t MaxBodyLength(uint32_t type, uint32_t page_size) {
  switch (type) {
    case kEpochBegin: return 16;
    case kPageData: {
      size_t count = kPageDataMaxBytes / page_size;
      return 8 + count * (8 + size_t{page_size});
    }
    case kDeviceState: return kDeviceStateMax;
    case kPageDelta: return 8 + kPageDeltaMaxCount * (kPageDeltaEntryHeader + kPageDeltaMaxEncoding);
    case kCompressed: return kCompressedHeader + kDeviceStateMax;
    case kSpecPageData: {
      size_t count = kPageDataMaxBytes / page_size;
      return 16 + count * (8 + size_t{page_size});
    }
    case kSpecApply: return 8 + 8 * size_t{kSpecApplyMaxCount};
    case kEpochCommit: return 16;
    case kHeartbeat: return 16;
    case kEnd: return 0;
    case kAck: return 8;
    case kNack: return 16 + kNackMessageMax;
    default:
      // Unknown optional records are skipped; bound them like the largest.
      return kDeviceStateMax;
  }
}

uint64_t RecordChecksum(uint32_t type, const uint8_t* body, size_t length) {
  uint64_t seed = uint64_t{type} | (uint64_t{static_cast<uint32_t>(length)} << 32);
  return XXH3_64bits_withSeed(body, length, seed);
}

}  // namespace ftsync::internal
