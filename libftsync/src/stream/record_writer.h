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
  Status EpochCommit(uint64_t epoch, uint64_t pages);
  Status Heartbeat(uint64_t sequence, uint64_t sender_time_ns);
  Status End();
  Status Ack(uint64_t epoch);
  Status Nack(uint64_t epoch, uint32_t reason, std::string_view message);

  uint64_t bytes_written() const { return bytes_written_; }

 private:
  ByteSink* sink_;
  uint64_t bytes_written_ = 0;
  std::vector<uint8_t> scratch_;
  struct HashStateDeleter {
    void operator()(XXH3_state_s* s) const;
  };
  std::unique_ptr<XXH3_state_s, HashStateDeleter> hash_;  // multi-part checksums
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_RECORD_WRITER_H_
