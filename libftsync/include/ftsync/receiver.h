// ftsync: the backup's engine. Reads the replication stream, buffers each
// epoch whole, checks it against every rule of the stream format, applies it
// atomically to a ReplicaImage, then acknowledges it on the back channel.
//
// Threading: Run()/Step() on one thread. last_complete_epoch(), stats() and
// SendHeartbeat() may be called from any thread.
#ifndef FTSYNC_RECEIVER_H_
#define FTSYNC_RECEIVER_H_

#include <cstdint>
#include <memory>
#include <optional>

#include "ftsync/io.h"
#include "ftsync/logger.h"
#include "ftsync/replica.h"
#include "ftsync/stats.h"
#include "ftsync/status.h"

namespace ftsync {

struct ReceiverOptions {
  Logger* logger = nullptr;  // nullptr: NullLogger()
};

class Receiver {
 public:
  // `replica`, `in` and `back` must outlive the Receiver.
  Receiver(ReplicaImage* replica, ByteSource* in, ByteSink* back, ReceiverOptions options = {});
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // Reads the primary's stream header and answers with the back-channel
  // header. Must precede Step(). On a bad header sends NACK and fails.
  Status Handshake();

  // Processes one record. Returns true while the session goes on, false
  // after END (a deliberate stop: do not fail over).
  // On failure the open epoch is discarded and the replica keeps its last
  // complete epoch:
  //  - the stream broke the format (IsCorruption()): NACK was sent;
  //  - the primary is gone (IsFailover()): EOF or broken transport;
  //  - the replica could not be written (kNoSpace, kIoError): NACK sent.
  // After a failure the Receiver is unusable; the status is sticky.
  Result<bool> Step();

  // Step() until END (OK) or failure.
  Status Run();

  // Sends a HEARTBEAT on the back channel.
  Status SendHeartbeat(uint64_t sender_time_ns);

  // The newest epoch of this session the replica holds complete.
  std::optional<uint64_t> last_complete_epoch() const;
  ReceiverStats stats() const;
  // Sequence and local receive time (monotonic ns) of the last HEARTBEAT or
  // record from the primary; for a daemon's liveness check.
  uint64_t last_activity_ns() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ftsync

#endif  // FTSYNC_RECEIVER_H_
