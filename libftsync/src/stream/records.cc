#include "stream/records.h"

#include "stream/format.h"

namespace ftsync::internal {
namespace {

Status Layout(const char* name, const std::string& what) {
  return Status(Errc::kCorruption, std::string("[R7] ") + name + ": " + what);
}

Status ExactLength(const char* name, std::span<const uint8_t> body, size_t want) {
  if (body.size() != want)
    return Layout(name, "body length " + std::to_string(body.size()) + ", expected " +
                            std::to_string(want));
  return Status::OK();
}

}  // namespace

uint64_t PageDataView::pfn(size_t i) const { return GetLE64(pfns + 8 * i); }

Result<EpochBeginBody> ParseEpochBegin(std::span<const uint8_t> b) {
  FTSYNC_RETURN_IF_ERROR(ExactLength("EPOCH_BEGIN", b, 16));
  if (GetLE32(b.data() + 8) != 0 || GetLE32(b.data() + 12) != 0)
    return Layout("EPOCH_BEGIN", "reserved field is non-zero");
  return EpochBeginBody{GetLE64(b.data())};
}

Result<PageDataView> ParsePageData(std::span<const uint8_t> b, uint32_t page_size) {
  if (b.size() < 8) return Layout("PAGE_DATA", "body shorter than its count field");
  uint32_t count = GetLE32(b.data());
  if (count == 0 || count > kPageDataMaxBytes / page_size)
    return Layout("PAGE_DATA", "count " + std::to_string(count) + " out of range 1.." +
                                   std::to_string(kPageDataMaxBytes / page_size));
  if (GetLE32(b.data() + 4) != 0) return Layout("PAGE_DATA", "reserved field is non-zero");
  FTSYNC_RETURN_IF_ERROR(ExactLength("PAGE_DATA", b, 8 + size_t{count} * (8 + page_size)));
  return PageDataView{count, b.data() + 8, b.data() + 8 + 8 * size_t{count}};
}

Result<EpochCommitBody> ParseEpochCommit(std::span<const uint8_t> b) {
  FTSYNC_RETURN_IF_ERROR(ExactLength("EPOCH_COMMIT", b, 16));
  return EpochCommitBody{GetLE64(b.data()), GetLE64(b.data() + 8)};
}

Result<HeartbeatBody> ParseHeartbeat(std::span<const uint8_t> b) {
  FTSYNC_RETURN_IF_ERROR(ExactLength("HEARTBEAT", b, 16));
  return HeartbeatBody{GetLE64(b.data()), GetLE64(b.data() + 8)};
}

Status ParseEnd(std::span<const uint8_t> b) { return ExactLength("END", b, 0); }

Result<AckBody> ParseAck(std::span<const uint8_t> b) {
  FTSYNC_RETURN_IF_ERROR(ExactLength("ACK", b, 8));
  return AckBody{GetLE64(b.data())};
}

Result<NackBody> ParseNack(std::span<const uint8_t> b) {
  if (b.size() < 16 || b.size() > 16 + kNackMessageMax)
    return Layout("NACK", "body length " + std::to_string(b.size()) + " out of range 16..1040");
  if (GetLE32(b.data() + 12) != 0) return Layout("NACK", "reserved field is non-zero");
  std::string msg(reinterpret_cast<const char*>(b.data() + 16), b.size() - 16);
  if (msg.find('\0') != std::string::npos) return Layout("NACK", "message contains NUL");
  return NackBody{GetLE64(b.data()), GetLE32(b.data() + 8), std::move(msg)};
}

}  // namespace ftsync::internal
