// The ordering rules of the forward stream (stream-format.md, "Ordering
// rules (forward stream)", O1-O9) and the PAGE_DELTA rules D1-D3 (D4, the
// base check, needs the pages: the Receiver's). Stateless about storage: it tells the
// caller what each record means and refuses the ones the spec forbids; the
// Receiver decides where the bytes go.
#ifndef FTSYNC_SRC_STREAM_FORWARD_VALIDATOR_H_
#define FTSYNC_SRC_STREAM_FORWARD_VALIDATOR_H_

#include <cstdint>
#include <span>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/status.h"
#include "stream/record_reader.h"
#include "stream/records.h"
#include "stream/stream_header.h"

namespace ftsync::internal {

struct ForwardEvent {
  enum Kind { kBegin, kPages, kDelta, kSpec, kSpecApply, kState, kCommit, kHeartbeat, kEnd } kind;
  uint64_t epoch = 0;
  PageDataView pages{};                 // kPages
  PageDeltaView delta{};                // kDelta: layout, pfns and encodings checked
  SpecPageDataView spec{};              // kSpec: for epoch expected_epoch()
  SpecApplyView spec_apply{};           // kSpecApply
  std::span<const uint8_t> state;       // kState
  HeartbeatBody heartbeat{};            // kHeartbeat
};

class ForwardValidator {
 public:
  explicit ForwardValidator(const StreamHeader& header);

  // Checks one record against the layout and ordering rules and returns its
  // meaning. After an error the validator is unusable (the stream is dead).
  Result<ForwardEvent> Feed(const RecordView& record);

  bool in_epoch() const { return in_epoch_; }
  uint64_t open_epoch() const { return epoch_; }
  // Next epoch number EPOCH_BEGIN must carry.
  uint64_t expected_epoch() const { return next_epoch_; }
  bool ended() const { return ended_; }

 private:
  Status Fail(Errc code, const char* rule, const std::string& what, const RecordView& r);

  StreamHeader header_;
  bool in_epoch_ = false;
  bool ended_ = false;
  uint64_t epoch_ = 0;
  uint64_t next_epoch_ = 0;
  uint64_t pages_ = 0;
  bool have_state_ = false;
  DirtyBitmap covered_;  // epoch 0 only: frames sent so far
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_STREAM_FORWARD_VALIDATOR_H_
