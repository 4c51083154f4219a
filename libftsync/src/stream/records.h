// Parsers for the record bodies of stream-format.md ("Record types").
// Each checks the exact layout [R7]; values are checked by the caller.
#ifndef FTSYNC_SRC_STREAM_RECORDS_H_
#define FTSYNC_SRC_STREAM_RECORDS_H_

#include <cstdint>
#include <span>
#include <string>

#include "ftsync/status.h"

namespace ftsync::internal {

struct EpochBeginBody { uint64_t epoch; };
struct EpochCommitBody { uint64_t epoch; uint64_t pages; };
struct HeartbeatBody { uint64_t sequence; uint64_t sender_time_ns; };
struct AckBody { uint64_t epoch; };
struct NackBody { uint64_t epoch; uint32_t reason; std::string message; };

// A PAGE_DATA body, viewed in place.
struct PageDataView {
  uint32_t count;
  const uint8_t* pfns;  // count little-endian u64
  const uint8_t* data;  // count pages
  uint64_t pfn(size_t i) const;
};

Result<EpochBeginBody> ParseEpochBegin(std::span<const uint8_t> body);
Result<PageDataView> ParsePageData(std::span<const uint8_t> body, uint32_t page_size);
Result<EpochCommitBody> ParseEpochCommit(std::span<const uint8_t> body);
Result<HeartbeatBody> ParseHeartbeat(std::span<const uint8_t> body);
Status ParseEnd(std::span<const uint8_t> body);
Result<AckBody> ParseAck(std::span<const uint8_t> body);
Result<NackBody> ParseNack(std::span<const uint8_t> body);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_RECORDS_H_
