// Writes stream headers and records to a ByteSink, framing each record
// (stream-format.md, "Record header") and encoding each body layout.
#ifndef FTSYNC_SRC_STREAM_RECORD_WRITER_H_
#define FTSYNC_SRC_STREAM_RECORD_WRITER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "ftsync/io.h"
#include "ftsync/status.h"
#include "stream/compression.h"
#include "stream/stream_header.h"

struct XXH3_state_s;

namespace ftsync::internal {

class RecordWriter {
 public:
  explicit RecordWriter(ByteSink* sink) : sink_(sink) {}

  Status WriteHeader(const StreamHeader& h);
  // Frames a record whose body is the concatenation of `parts`.
  Status WriteRecord(uint32_t type, std::span<const ConstBuffer> parts);

  Status EpochBegin(uint64_t epoch);
  // `data` holds pfns.size() pages of `page_size` bytes, in pfn order.
  // Requires 1 <= pfns.size() <= kPageDataMaxBytes / page_size.
  Status PageData(std::span<const uint64_t> pfns, const uint8_t* data, uint32_t page_size);
  Status DeviceState(std::span<const uint8_t> blob);
  // Speculative pages for epoch `epoch` (same constraints as PageData).
  Status SpecPageData(uint64_t epoch, std::span<const uint64_t> pfns, const uint8_t* data,
                      uint32_t page_size);
  // Requires 1 <= pfns.size() <= kSpecApplyMaxCount.
  Status SpecApply(std::span<const uint64_t> pfns);
  // A PAGE_DELTA body as PageDeltaBuilder made it.
  Status PageDelta(std::span<const uint8_t> body);

  // From now on PAGE_DATA, PAGE_DELTA and DEVICE_STATE bodies are sent
  // inside COMPRESSED records with `codec` at `level` (0: the codec's
  // default) whenever that makes them smaller. Codec::kNone: plain again.
  Status SetCompression(Codec codec, int level);

  // Counters over the bodies of compressible records: bytes before
  // compression, bytes those records' bodies took on the stream (COMPRESSED
  // header included; equal to the former when sent plain), and the time
  // spent compressing.
  uint64_t compress_in_bytes() const { return compress_in_; }
  uint64_t compress_out_bytes() const { return compress_out_; }
  uint64_t compress_ns() const { return compress_ns_; }
  Status EpochCommit(uint64_t epoch, uint64_t pages);
  Status Heartbeat(uint64_t sequence, uint64_t sender_time_ns);
  Status End();
  Status Ack(uint64_t epoch);
  Status Nack(uint64_t epoch, uint32_t reason, std::string_view message);

  uint64_t bytes_written() const { return bytes_written_; }

 private:
  ByteSink* sink_;
  // Frames a compressible record, compressed when that pays.
  Status WriteBody(uint32_t type, std::span<const ConstBuffer> parts);

  uint64_t bytes_written_ = 0;
  std::vector<uint8_t> scratch_;
  std::unique_ptr<Compressor> compressor_;
  std::vector<uint8_t> plain_;       // a multi-part body gathered for compression
  std::vector<uint8_t> compressed_;  // its compressed form
  uint64_t compress_in_ = 0;
  uint64_t compress_out_ = 0;
  uint64_t compress_ns_ = 0;
  struct HashStateDeleter {
    void operator()(XXH3_state_s* s) const;
  };
  std::unique_ptr<XXH3_state_s, HashStateDeleter> hash_;  // multi-part checksums
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_RECORD_WRITER_H_
