#include "stream/record_writer.h"

#include <xxhash.h>

#include <cstring>
#include <vector>

#include "stream/records.h"
#include "util/clock.h"

namespace ftsync::internal {

void RecordWriter::HashStateDeleter::operator()(XXH3_state_s* s) const { XXH3_freeState(s); }

namespace {
constexpr uint8_t kZeros[8] = {};
}  // namespace

Status RecordWriter::WriteHeader(const StreamHeader& h) {
  auto bytes = EncodeStreamHeader(h);
  FTSYNC_RETURN_IF_ERROR(sink_->Write(ConstBuffer(bytes)));
  bytes_written_ += bytes.size();
  return Status::OK();
}

Status RecordWriter::WriteRecord(uint32_t type, std::span<const ConstBuffer> parts) {
  size_t length = 0;
  for (ConstBuffer p : parts) length += p.size();
  if (length > UINT32_MAX)
    return Status(Errc::kInvalidArgument, RecordTypeName(type) + ": body too large");
  // The checksum covers the body as one byte string; hash the parts in order.
  uint64_t checksum;
  uint64_t seed = uint64_t{type} | (uint64_t{static_cast<uint32_t>(length)} << 32);
  if (parts.size() == 1) {
    checksum = XXH3_64bits_withSeed(parts[0].data(), length, seed);
  } else {
    if (!hash_) hash_.reset(XXH3_createState());
    XXH3_state_t* st = hash_.get();
    XXH3_64bits_reset_withSeed(st, seed);
    for (ConstBuffer p : parts) XXH3_64bits_update(st, p.data(), p.size());
    checksum = XXH3_64bits_digest(st);
  }
  uint8_t header[kRecordHeaderSize];
  PutLE32(header, type);
  PutLE32(header + 4, static_cast<uint32_t>(length));
  PutLE64(header + 8, checksum);

  ConstBuffer bufs[8];
  std::vector<ConstBuffer> many;
  ConstBuffer* out = bufs;
  size_t n = parts.size() + 2;
  if (n > 8) {
    many.resize(n);
    out = many.data();
  }
  out[0] = ConstBuffer(header, kRecordHeaderSize);
  for (size_t i = 0; i < parts.size(); ++i) out[i + 1] = parts[i];
  out[n - 1] = ConstBuffer(kZeros, PaddedLength(length) - length);
  FTSYNC_RETURN_IF_ERROR(sink_->Write(std::span<const ConstBuffer>(out, n)));
  bytes_written_ += kRecordHeaderSize + PaddedLength(length);
  return Status::OK();
}

Status RecordWriter::EpochBegin(uint64_t epoch) {
  uint8_t b[16] = {};
  PutLE64(b, epoch);
  ConstBuffer part(b, sizeof b);
  return WriteRecord(kEpochBegin, std::span(&part, 1));
}

Status RecordWriter::PageData(std::span<const uint64_t> pfns, const uint8_t* data,
                              uint32_t page_size) {
  size_t count = pfns.size();
  if (count == 0 || count > kPageDataMaxBytes / page_size)
    return Status(Errc::kInvalidArgument, "PAGE_DATA: bad page count " + std::to_string(count));
  scratch_.resize(8 + 8 * count);
  PutLE32(scratch_.data(), static_cast<uint32_t>(count));
  PutLE32(scratch_.data() + 4, 0);
  for (size_t i = 0; i < count; ++i) PutLE64(scratch_.data() + 8 + 8 * i, pfns[i]);
  ConstBuffer parts[2] = {ConstBuffer(scratch_), ConstBuffer(data, count * page_size)};
  return WriteBody(kPageData, parts);
}

Status RecordWriter::DeviceState(std::span<const uint8_t> blob) {
  if (blob.size() > kDeviceStateMax)
    return Status(Errc::kInvalidArgument,
                  "DEVICE_STATE: blob of " + std::to_string(blob.size()) + " bytes exceeds 64 MiB");
  ConstBuffer part(blob);
  return WriteBody(kDeviceState, std::span(&part, 1));
}

Status RecordWriter::SpecPageData(uint64_t epoch, std::span<const uint64_t> pfns, const uint8_t* data,
                                  uint32_t page_size) {
  size_t count = pfns.size();
  if (count == 0 || count > kPageDataMaxBytes / page_size)
    return Status(Errc::kInvalidArgument, "SPEC_PAGE_DATA: bad page count " + std::to_string(count));
  scratch_.resize(16 + 8 * count);
  PutLE64(scratch_.data(), epoch);
  PutLE32(scratch_.data() + 8, static_cast<uint32_t>(count));
  PutLE32(scratch_.data() + 12, 0);
  for (size_t i = 0; i < count; ++i) PutLE64(scratch_.data() + 16 + 8 * i, pfns[i]);
  ConstBuffer parts[2] = {ConstBuffer(scratch_), ConstBuffer(data, count * page_size)};
  return WriteBody(kSpecPageData, parts);
}

Status RecordWriter::SpecApply(std::span<const uint64_t> pfns) {
  size_t count = pfns.size();
  if (count == 0 || count > kSpecApplyMaxCount)
    return Status(Errc::kInvalidArgument, "SPEC_APPLY: bad count " + std::to_string(count));
  scratch_.resize(8 + 8 * count);
  PutLE32(scratch_.data(), static_cast<uint32_t>(count));
  PutLE32(scratch_.data() + 4, 0);
  for (size_t i = 0; i < count; ++i) PutLE64(scratch_.data() + 8 + 8 * i, pfns[i]);
  ConstBuffer part(scratch_);
  return WriteRecord(kSpecApply, std::span(&part, 1));
}

Status RecordWriter::PageDelta(std::span<const uint8_t> body) {
  if (body.size() < 8 + kPageDeltaEntryHeader + 1 ||
      body.size() > MaxBodyLength(kPageDelta, kPageDeltaPageSize))
    return Status(Errc::kInvalidArgument, "PAGE_DELTA: bad body length " + std::to_string(body.size()));
  ConstBuffer part(body);
  return WriteBody(kPageDelta, std::span(&part, 1));
}

Status RecordWriter::SetCompression(Codec codec, int level) {
  if (codec == Codec::kNone) {
    compressor_.reset();
    return Status::OK();
  }
  Result<std::unique_ptr<Compressor>> c = Compressor::Create(codec, level);
  if (!c.ok()) return c.status();
  compressor_ = std::move(c).value();
  return Status::OK();
}

Status RecordWriter::WriteBody(uint32_t type, std::span<const ConstBuffer> parts) {
  size_t length = 0;
  for (ConstBuffer p : parts) length += p.size();
  compress_in_ += length;
  if (!compressor_ || length <= kCompressedHeader + 1) {
    compress_out_ += length;
    return WriteRecord(type, parts);
  }
  uint64_t t0 = MonotonicNs();
  std::span<const uint8_t> plain;
  if (parts.size() == 1) {
    plain = std::span<const uint8_t>(parts[0].data(), parts[0].size());
  } else {
    plain_.resize(length);
    size_t at = 0;
    for (ConstBuffer p : parts) {
      std::memcpy(plain_.data() + at, p.data(), p.size());
      at += p.size();
    }
    plain = plain_;
  }
  // Worth it only if the COMPRESSED body (header + data) is shorter.
  Result<bool> smaller = compressor_->Compress(plain, length - kCompressedHeader, &compressed_);
  compress_ns_ += MonotonicNs() - t0;
  if (!smaller.ok()) return smaller.status();
  if (!*smaller) {
    compress_out_ += length;
    return WriteRecord(type, parts);
  }
  uint8_t header[kCompressedHeader];
  PutCompressedHeader(header, CompressedHeader{type, static_cast<uint32_t>(length),
                                               RecordChecksum(type, plain.data(), length),
                                               static_cast<uint8_t>(compressor_->codec())});
  ConstBuffer out[2] = {ConstBuffer(header, sizeof header), ConstBuffer(compressed_)};
  compress_out_ += kCompressedHeader + compressed_.size();
  return WriteRecord(kCompressed, out);
}

Status RecordWriter::EpochCommit(uint64_t epoch, uint64_t pages) {
  uint8_t b[16];
  PutLE64(b, epoch);
  PutLE64(b + 8, pages);
  ConstBuffer part(b, sizeof b);
  return WriteRecord(kEpochCommit, std::span(&part, 1));
}

Status RecordWriter::Heartbeat(uint64_t sequence, uint64_t sender_time_ns) {
  uint8_t b[16];
  PutLE64(b, sequence);
  PutLE64(b + 8, sender_time_ns);
  ConstBuffer part(b, sizeof b);
  return WriteRecord(kHeartbeat, std::span(&part, 1));
}

Status RecordWriter::End() { return WriteRecord(kEnd, {}); }

Status RecordWriter::Ack(uint64_t epoch) {
  uint8_t b[8];
  PutLE64(b, epoch);
  ConstBuffer part(b, sizeof b);
  return WriteRecord(kAck, std::span(&part, 1));
}

Status RecordWriter::Nack(uint64_t epoch, uint32_t reason, std::string_view message) {
  std::string msg(message.substr(0, kNackMessageMax));
  // Cut at a character boundary: never leave half a UTF-8 sequence.
  if (message.size() > kNackMessageMax)
    while (!msg.empty() && (static_cast<uint8_t>(msg.back()) & 0xC0) == 0x80) msg.pop_back();
  if (!msg.empty() && (static_cast<uint8_t>(msg.back()) & 0xC0) == 0xC0) msg.pop_back();
  for (char& c : msg)
    if (c == '\0') c = ' ';
  std::vector<uint8_t> b(16 + msg.size());
  PutLE64(b.data(), epoch);
  PutLE32(b.data() + 8, reason);
  PutLE32(b.data() + 12, 0);
  std::memcpy(b.data() + 16, msg.data(), msg.size());
  ConstBuffer part(b);
  return WriteRecord(kNack, std::span(&part, 1));
}

}  // namespace ftsync::internal
