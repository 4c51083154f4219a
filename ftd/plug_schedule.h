// Maps ftsync's epochs onto the barriers of Linux's `plug` qdisc.
//
// sch_plug holds packets behind barriers, but only ONE closed buffer at a
// time: "buffer" (TCQ_PLUG_BUFFER) closes the packets queued since the
// previous barrier into "the last buffer" — overwriting the count of an
// earlier closed buffer that was not yet released — and "release_one"
// (TCQ_PLUG_RELEASE_ONE) lets the last closed buffer out. "release
// indefinite" turns holding off; the next "buffer" turns it on again.
//
// ftsync keeps several epochs in flight (Postsuspend(n+1) may come before
// Commit(n)), so a barrier per Postsuspend would lose counts. The rule here:
//   Postsuspend(e): if no barrier is outstanding in the qdisc, insert one and
//                   label it e (everything queued so far belongs to epochs
//                   <= e); otherwise insert nothing now: the packets keep
//                   accumulating in the open buffer.
//   Commit(c):      if the outstanding barrier's label is <= c, release it.
// A packet is therefore never released before the commit of its epoch; when
// ACKs lag behind by more than one epoch, packets of an epoch wait for a
// later commit (at most until the commit of the next barrier's label). With
// one epoch in flight each epoch gets its own barrier.
#ifndef FTSYNC_FTD_PLUG_SCHEDULE_H_
#define FTSYNC_FTD_PLUG_SCHEDULE_H_

#include <cstdint>
#include <optional>

#include "ftsync/status.h"

namespace ftd {

// The three commands of sch_plug, for one or more qdiscs.
class PlugControl {
 public:
  virtual ~PlugControl() = default;
  virtual ftsync::Status Buffer() = 0;
  virtual ftsync::Status ReleaseOne() = 0;
  virtual ftsync::Status ReleaseIndefinite() = 0;
};

class PlugSchedule {
 public:
  explicit PlugSchedule(PlugControl* plug) : plug_(plug) {}
  // Start holding (before epoch 0): packets from now on wait for a commit.
  ftsync::Status Start();
  ftsync::Status Postsuspend(uint64_t epoch);
  ftsync::Status Commit(uint64_t epoch);
  // Stop holding: everything held leaves, later packets pass at once.
  ftsync::Status Stop();

  bool holding() const { return holding_; }
  // The label of the barrier in the qdisc, if one is outstanding.
  std::optional<uint64_t> outstanding() const { return outstanding_; }

 private:
  PlugControl* plug_;
  bool holding_ = false;
  std::optional<uint64_t> outstanding_;
};

}  // namespace ftd

#endif  // FTSYNC_FTD_PLUG_SCHEDULE_H_
