// Parsers for the record bodies of stream-format.md ("Record types").
// Each checks the exact layout [R7]; values are checked by the caller.
#ifndef FTSYNC_SRC_STREAM_RECORDS_H_
#define FTSYNC_SRC_STREAM_RECORDS_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

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

// A SPEC_PAGE_DATA body, viewed in place.
struct SpecPageDataView {
  uint64_t epoch;
  uint32_t count;
  const uint8_t* pfns;
  const uint8_t* data;
  uint64_t pfn(size_t i) const;
};

// A SPEC_APPLY body, viewed in place.
struct SpecApplyView {
  uint32_t count;
  const uint8_t* pfns;
  uint64_t pfn(size_t i) const;
};

// One entry of a PAGE_DELTA body.
struct PageDeltaEntry {
  uint64_t pfn;
  uint64_t base;                      // XXH3-64 of the base page
  std::span<const uint8_t> encoding;  // page_delta.h layout, not yet checked (D3)
};

// A PAGE_DELTA body whose layout [R7] was checked, viewed in place.
struct PageDeltaView {
  uint32_t count = 0;
  std::span<const uint8_t> body;
  // Reads the entry at byte `offset` (8 for the first) and returns the
  // offset of the next. Only for offsets reached this way.
  size_t Entry(size_t offset, PageDeltaEntry* e) const;
};

// Builds a PAGE_DELTA body.
class PageDeltaBuilder {
 public:
  PageDeltaBuilder() { Clear(); }
  void Clear();
  // Requires 1 <= encoding.size() <= kPageDeltaMaxEncoding and count() < kPageDeltaMaxCount.
  void Add(uint64_t pfn, uint64_t base, std::span<const uint8_t> encoding);
  uint32_t count() const { return count_; }
  size_t size() const { return buf_.size(); }
  // The body, count field filled in.
  std::span<const uint8_t> body();

 private:
  std::vector<uint8_t> buf_;
  uint32_t count_ = 0;
};

// The fixed header of a COMPRESSED body.
struct CompressedHeader {
  uint32_t inner_type;
  uint32_t inner_length;
  uint64_t inner_checksum;
  uint8_t codec;
};
void PutCompressedHeader(uint8_t* out, const CompressedHeader& h);  // kCompressedHeader bytes

Result<EpochBeginBody> ParseEpochBegin(std::span<const uint8_t> body);
Result<PageDataView> ParsePageData(std::span<const uint8_t> body, uint32_t page_size);
Result<PageDeltaView> ParsePageDelta(std::span<const uint8_t> body);
Result<SpecPageDataView> ParseSpecPageData(std::span<const uint8_t> body, uint32_t page_size);
Result<SpecApplyView> ParseSpecApply(std::span<const uint8_t> body);
Result<EpochCommitBody> ParseEpochCommit(std::span<const uint8_t> body);
Result<HeartbeatBody> ParseHeartbeat(std::span<const uint8_t> body);
Status ParseEnd(std::span<const uint8_t> body);
Result<AckBody> ParseAck(std::span<const uint8_t> body);
Result<NackBody> ParseNack(std::span<const uint8_t> body);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_RECORDS_H_
