// ftsync: byte sinks and sources. The library performs no socket I/O of its
// own: the engines write the replication stream to a ByteSink and read the
// back channel from a ByteSource that the caller (ftd, a test, another
// toolstack) provides.
#ifndef FTSYNC_IO_H_
#define FTSYNC_IO_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "ftsync/status.h"

namespace ftsync {

using ConstBuffer = std::span<const uint8_t>;

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Writes all bytes of all buffers, in order, or fails. On failure an
  // unknown prefix may have been written; the stream is then unusable.
  virtual Status Write(std::span<const ConstBuffer> buffers) = 0;
  Status Write(ConstBuffer buffer) { return Write(std::span(&buffer, 1)); }
  // Signals end of data to the reader. Idempotent.
  virtual Status Close() = 0;
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads between 1 and buf.size() bytes, blocking until some are
  // available. Returns 0 at end of stream.
  virtual Result<size_t> ReadSome(std::span<uint8_t> buf) = 0;
  // Returns true when ReadSome would not block (data or end of stream is
  // available), waiting at most timeout_ms (0: just poll, <0: forever).
  virtual Result<bool> WaitReadable(int timeout_ms) = 0;

  // Reads exactly buf.size() bytes. End of stream before that is
  // kPeerGone if nothing was read, kCorruption ("truncated") otherwise.
  Status ReadExact(std::span<uint8_t> buf);
};

// An in-memory, thread-safe, unbounded byte pipe: one writer end, one reader
// end. Tests and benchmarks connect a Checkpointer and a Receiver with two.
// Closing the reader makes later writes fail with kPeerGone.
class MemoryPipe {
 public:
  MemoryPipe();
  ~MemoryPipe();
  ByteSink& sink();
  ByteSource& source();
  // Makes the reader see end of stream / the writer see a broken pipe.
  void CloseReader();
  // Bytes written so far.
  uint64_t bytes_written() const;
  // Bytes written and not yet read.
  uint64_t buffered() const;

  struct State;  // shared by both ends; defined in io.cc

 private:
  std::shared_ptr<State> state_;
  std::unique_ptr<ByteSink> sink_;
  std::unique_ptr<ByteSource> source_;
};

// A sink over a file descriptor (pipe, socket, file). Does not own the fd
// unless `own` is true. Uses writev; retries on EINTR and short writes.
std::unique_ptr<ByteSink> MakeFdSink(int fd, bool own = false);
// A source over a file descriptor. Uses poll() for WaitReadable.
std::unique_ptr<ByteSource> MakeFdSource(int fd, bool own = false);

}  // namespace ftsync

#endif  // FTSYNC_IO_H_
