#include "plug_schedule.h"

namespace ftd {
using ftsync::Status;

Status PlugSchedule::Start() {
  // "buffer" turns holding on; nothing is closed yet (the kernel's last
  // buffer is empty after a release indefinite).
  FTSYNC_RETURN_IF_ERROR(plug_->Buffer());
  holding_ = true;
  outstanding_.reset();
  return Status::OK();
}

Status PlugSchedule::Postsuspend(uint64_t epoch) {
  if (!holding_ || outstanding_) return Status::OK();
  FTSYNC_RETURN_IF_ERROR(plug_->Buffer());
  outstanding_ = epoch;
  return Status::OK();
}

Status PlugSchedule::Commit(uint64_t epoch) {
  if (!holding_ || !outstanding_ || *outstanding_ > epoch) return Status::OK();
  FTSYNC_RETURN_IF_ERROR(plug_->ReleaseOne());
  outstanding_.reset();
  return Status::OK();
}

Status PlugSchedule::Stop() {
  holding_ = false;
  outstanding_.reset();
  return plug_->ReleaseIndefinite();
}

}  // namespace ftd
