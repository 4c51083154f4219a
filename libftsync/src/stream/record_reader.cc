#include "stream/record_reader.h"

#include <cstdio>
#include <cstring>

#include "stream/compression.h"

namespace ftsync::internal {
namespace {

std::string At(uint64_t offset) { return " at offset " + std::to_string(offset); }

}  // namespace

Status RecordReader::Read(std::span<uint8_t> buf, const char* what) {
  Status s = source_->ReadExact(buf);
  if (s.ok()) {
    offset_ += buf.size();
    return s;
  }
  // A cut inside a record: for a live session the sender is gone (the
  // receiver fails over); a stored stream cut like this is malformed.
  if (s.code() == Errc::kPeerGone || s.code() == Errc::kCorruption)
    return Status(Errc::kPeerGone, std::string("[R6] truncated: stream ends inside ") +
                                       what + At(offset_));
  return s;
}

Result<StreamHeader> RecordReader::ReadHeader() {
  // Magic and version first: a peer of another version may well have a
  // header of another size, and deserves a version error, not "truncated".
  uint8_t b[kStreamHeaderSize] = {};
  Status s = source_->ReadExact(std::span<uint8_t>(b, 12));
  if (s.ok()) {
    offset_ += 12;
    if (std::memcmp(b, kMagic, 8) != 0 || GetLE32(b + 8) != kVersion)
      return ParseStreamHeader(b, back_channel_);  // H1 or H2
    s = source_->ReadExact(std::span<uint8_t>(b + 12, kStreamHeaderSize - 12));
  }
  if (!s.ok()) {
    if (s.code() == Errc::kPeerGone || s.code() == Errc::kCorruption)
      return Status(Errc::kCorruption, "[H9] truncated: stream ends inside the stream header");
    return s;
  }
  offset_ += kStreamHeaderSize - 12;
  Result<StreamHeader> h = ParseStreamHeader(b, back_channel_);
  if (h.ok()) header_ = *h;
  return h;
}

Result<RecordView> RecordReader::Next() {
  for (;;) {
    uint64_t start = offset_;
    uint8_t hdr[kRecordHeaderSize];
    Status s = source_->ReadExact(std::span<uint8_t>(hdr, 1));
    if (!s.ok()) return s;  // kPeerGone at a record boundary: O10, the caller decides
    offset_ += 1;
    FTSYNC_RETURN_IF_ERROR(Read(std::span<uint8_t>(hdr + 1, kRecordHeaderSize - 1), "a record header"));
    uint32_t type = GetLE32(hdr);
    uint32_t length = GetLE32(hdr + 4);
    uint64_t checksum = GetLE64(hdr + 8);
    uint32_t number = type & ~kOptionalBit;
    bool optional = (type & kOptionalBit) != 0;
    bool known = IsKnownType(number);
    std::string name = RecordTypeName(number);
    if (number == 0)
      return Status(Errc::kCorruption, "[R4] record type number 0 is never valid" + At(start));
    if (!known && !optional)
      return Status(Errc::kCorruption, "[R4] unknown mandatory record " + name + At(start));
    if (known && optional)
      return Status(Errc::kCorruption, "[R5] " + name + " marked optional" + At(start));
    if (known && !TypeAllowedOn(number, back_channel_))
      return Status(Errc::kProtocol, std::string(back_channel_ ? "[B2] " : "[R8] ") + name +
                                         " is not allowed on the " +
                                         (back_channel_ ? "back channel" : "forward stream") +
                                         At(start));
    size_t max = MaxBodyLength(number, header_.page_size);
    if (length > max)
      return Status(Errc::kCorruption, "[R1] " + name + " length " + std::to_string(length) +
                                           " exceeds the maximum " + std::to_string(max) + At(start));
    size_t padded = PaddedLength(length);
    body_.resize(padded);
    FTSYNC_RETURN_IF_ERROR(Read(body_, (name + " body").c_str()));
    if (RecordChecksum(type, body_.data(), length) != checksum)
      return Status(Errc::kCorruption, "[R2] " + name + ": checksum mismatch" + At(start));
    for (size_t i = length; i < padded; ++i)
      if (body_[i] != 0)
        return Status(Errc::kCorruption, "[R3] " + name + ": non-zero padding" + At(start));
    if (!known) continue;  // optional and unknown: skipped
    body_length_ = length;
    if (number == kCompressed) {
      Result<uint32_t> inner = Unwrap(length, start);
      if (!inner.ok()) return inner.status();
      return RecordView{*inner, std::span<const uint8_t>(body_.data(), body_length_), start, true};
    }
    return RecordView{number, std::span<const uint8_t>(body_.data(), length), start};
  }
}

Result<uint32_t> RecordReader::Unwrap(uint32_t length, uint64_t start) {
  const uint8_t* b = body_.data();
  if (length <= kCompressedHeader)
    return Status(Errc::kCorruption, "[R7] COMPRESSED: body length " + std::to_string(length) +
                                         ", at least " + std::to_string(kCompressedHeader + 1) +
                                         " needed" + At(start));
  for (size_t i = 17; i < kCompressedHeader; ++i)
    if (b[i] != 0)
      return Status(Errc::kCorruption, "[R7] COMPRESSED: reserved field is non-zero" + At(start));
  uint32_t inner = GetLE32(b);
  uint32_t inner_length = GetLE32(b + 4);
  uint64_t inner_checksum = GetLE64(b + 8);
  uint8_t codec = b[16];
  if (!IsWireCodec(codec))
    return Status(Errc::kCorruption, "[C1] COMPRESSED: unknown codec " + std::to_string(codec) + At(start));
  if (!IsCompressibleType(inner))
    return Status(Errc::kCorruption, "[C2] COMPRESSED: wraps " + RecordTypeName(inner) +
                                         ", only PAGE_DATA, PAGE_DELTA, SPEC_PAGE_DATA or DEVICE_STATE may be" +
                                         At(start));
  std::string name = RecordTypeName(inner);
  size_t max = MaxBodyLength(inner, header_.page_size);
  if (inner_length == 0 || inner_length > max)
    return Status(Errc::kCorruption, "[C3] COMPRESSED " + name + ": inner length " +
                                         std::to_string(inner_length) + " not in 1.." +
                                         std::to_string(max) + At(start));
  inflated_.resize(inner_length);
  Status s = Decompress(codec, std::span<const uint8_t>(b + kCompressedHeader, length - kCompressedHeader),
                        inflated_);
  if (!s.ok()) return Status(s.code(), s.context() + " (COMPRESSED " + name + At(start) + ")");
  if (RecordChecksum(inner, inflated_.data(), inner_length) != inner_checksum)
    return Status(Errc::kCorruption, "[C5] COMPRESSED " + name +
                                         ": checksum mismatch after decompression" + At(start));
  body_.swap(inflated_);
  body_length_ = inner_length;
  return inner;
}

std::vector<uint8_t> RecordReader::TakeBody(std::vector<uint8_t> spare) {
  std::vector<uint8_t> out = std::move(body_);
  out.resize(body_length_);
  body_ = std::move(spare);
  return out;
}

}  // namespace ftsync::internal
