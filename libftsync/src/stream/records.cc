#include "stream/records.h"

#include <cstring>

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

uint64_t SpecPageDataView::pfn(size_t i) const { return GetLE64(pfns + 8 * i); }
uint64_t SpecApplyView::pfn(size_t i) const { return GetLE64(pfns + 8 * i); }

Result<SpecPageDataView> ParseSpecPageData(std::span<const uint8_t> b, uint32_t page_size) {
  if (b.size() < 16) return Layout("SPEC_PAGE_DATA", "body shorter than its fixed fields");
  uint32_t count = GetLE32(b.data() + 8);
  if (count == 0 || count > kPageDataMaxBytes / page_size)
    return Layout("SPEC_PAGE_DATA", "count " + std::to_string(count) + " out of range 1.." +
                                        std::to_string(kPageDataMaxBytes / page_size));
  if (GetLE32(b.data() + 12) != 0) return Layout("SPEC_PAGE_DATA", "reserved field is non-zero");
  FTSYNC_RETURN_IF_ERROR(ExactLength("SPEC_PAGE_DATA", b, 16 + size_t{count} * (8 + page_size)));
  return SpecPageDataView{GetLE64(b.data()), count, b.data() + 16, b.data() + 16 + 8 * size_t{count}};
}

Result<SpecApplyView> ParseSpecApply(std::span<const uint8_t> b) {
  if (b.size() < 8) return Layout("SPEC_APPLY", "body shorter than its count field");
  uint32_t count = GetLE32(b.data());
  if (count == 0 || count > kSpecApplyMaxCount)
    return Layout("SPEC_APPLY", "count " + std::to_string(count) + " out of range 1.." +
                                    std::to_string(kSpecApplyMaxCount));
  if (GetLE32(b.data() + 4) != 0) return Layout("SPEC_APPLY", "reserved field is non-zero");
  FTSYNC_RETURN_IF_ERROR(ExactLength("SPEC_APPLY", b, 8 + 8 * size_t{count}));
  return SpecApplyView{count, b.data() + 8};
}

size_t PageDeltaView::Entry(size_t offset, PageDeltaEntry* e) const {
  const uint8_t* p = body.data() + offset;
  size_t len = size_t{p[16]} | (size_t{p[17]} << 8);
  e->pfn = GetLE64(p);
  e->base = GetLE64(p + 8);
  e->encoding = body.subspan(offset + kPageDeltaEntryHeader, len);
  return offset + kPageDeltaEntryHeader + len;
}

Result<PageDeltaView> ParsePageDelta(std::span<const uint8_t> b) {
  if (b.size() < 8) return Layout("PAGE_DELTA", "body shorter than its count field");
  uint32_t count = GetLE32(b.data());
  if (count == 0 || count > kPageDeltaMaxCount)
    return Layout("PAGE_DELTA", "count " + std::to_string(count) + " out of range 1.." +
                                    std::to_string(kPageDeltaMaxCount));
  if (GetLE32(b.data() + 4) != 0) return Layout("PAGE_DELTA", "reserved field is non-zero");
  size_t pos = 8;
  for (uint32_t i = 0; i < count; ++i) {
    if (b.size() - pos < kPageDeltaEntryHeader)
      return Layout("PAGE_DELTA", "body ends inside the header of entry " + std::to_string(i));
    size_t len = size_t{b[pos + 16]} | (size_t{b[pos + 17]} << 8);
    if (len == 0 || len > kPageDeltaMaxEncoding)
      return Layout("PAGE_DELTA", "entry " + std::to_string(i) + " has length " +
                                      std::to_string(len) + ", not in 1.." +
                                      std::to_string(kPageDeltaMaxEncoding));
    if (b.size() - pos - kPageDeltaEntryHeader < len)
      return Layout("PAGE_DELTA", "body ends inside the encoding of entry " + std::to_string(i));
    pos += kPageDeltaEntryHeader + len;
  }
  if (pos != b.size())
    return Layout("PAGE_DELTA", std::to_string(b.size() - pos) + " bytes after entry " +
                                    std::to_string(count - 1));
  return PageDeltaView{count, b};
}

void PageDeltaBuilder::Clear() {
  buf_.assign(8, 0);
  count_ = 0;
}

void PageDeltaBuilder::Add(uint64_t pfn, uint64_t base, std::span<const uint8_t> enc) {
  size_t at = buf_.size();
  buf_.resize(at + kPageDeltaEntryHeader + enc.size());
  uint8_t* p = buf_.data() + at;
  PutLE64(p, pfn);
  PutLE64(p + 8, base);
  p[16] = static_cast<uint8_t>(enc.size());
  p[17] = static_cast<uint8_t>(enc.size() >> 8);
  std::memcpy(p + kPageDeltaEntryHeader, enc.data(), enc.size());
  ++count_;
}

std::span<const uint8_t> PageDeltaBuilder::body() {
  PutLE32(buf_.data(), count_);
  return buf_;
}

void PutCompressedHeader(uint8_t* out, const CompressedHeader& h) {
  std::memset(out, 0, kCompressedHeader);
  PutLE32(out, h.inner_type);
  PutLE32(out + 4, h.inner_length);
  PutLE64(out + 8, h.inner_checksum);
  out[16] = h.codec;
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
