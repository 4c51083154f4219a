// Reads a stream header and framed records from a ByteSource, enforcing the
// framing rules of stream-format.md (H1-H9, R1-R8). Body layouts are checked
// by the parsers in records.h; ordering by EpochAssembler.
#ifndef FTSYNC_SRC_STREAM_RECORD_READER_H_
#define FTSYNC_SRC_STREAM_RECORD_READER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "ftsync/io.h"
#include "ftsync/status.h"
#include "stream/stream_header.h"

namespace ftsync::internal {

struct RecordView {
  uint32_t type;
  std::span<const uint8_t> body;  // valid until the next Next()
  uint64_t offset;                // stream offset of the record header
  bool compressed = false;        // arrived inside a COMPRESSED record
};

class RecordReader {
 public:
  RecordReader(ByteSource* source, bool back_channel)
      : source_(source), back_channel_(back_channel) {}

  // Reads and checks the header. Must be called first, once.
  Result<StreamHeader> ReadHeader();

  // Returns the next mandatory or known record. Unknown optional records are
  // checked and skipped. A COMPRESSED record is checked (C1-C5) and
  // returned as the record it wraps, decompressed. End of stream exactly at a record boundary is
  // kPeerGone ("end of stream"); inside a record it is kCorruption [R6].
  Result<RecordView> Next();

  // Hands over the buffer holding the last record's body (trimmed to its
  // length) and continues with `spare` as the reading buffer, so a caller
  // can keep a body without copying it.
  std::vector<uint8_t> TakeBody(std::vector<uint8_t> spare);

  uint64_t bytes_read() const { return offset_; }
  const StreamHeader& header() const { return header_; }

 private:
  Status Read(std::span<uint8_t> buf, const char* what);
  // Replaces the COMPRESSED body in body_ by the record it wraps.
  Result<uint32_t> Unwrap(uint32_t length, uint64_t start);

  ByteSource* source_;
  bool back_channel_;
  StreamHeader header_;
  uint64_t offset_ = 0;
  std::vector<uint8_t> body_;
  size_t body_length_ = 0;
  std::vector<uint8_t> inflated_;
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_RECORD_READER_H_
