// ftsync: checkpoint devices, the phases of libxl's Remus devices.
//
// A device that holds guest output (network buffer, console buffer) or
// replicates other state (disk) joins each epoch through these phases:
//
//   Setup()                  once, before epoch 0
//   Postsuspend(epoch)       guest just suspended for `epoch`: start a new
//                            output buffer; output from now on belongs to
//                            epoch+1
//   Preresume(epoch)         state staged, guest about to resume
//   Commit(epoch)            the backup ACKed `epoch`: release the output
//                            the guest produced up to that epoch's suspend
//   Teardown()               once, always, even if Setup failed; idempotent
//
// Commit(n) is called only after ACK(n), and in epoch order.
#ifndef FTSYNC_CHECKPOINT_DEVICE_H_
#define FTSYNC_CHECKPOINT_DEVICE_H_

#include <cstdint>
#include <string>

#include "ftsync/status.h"

namespace ftsync {

class CheckpointDevice {
 public:
  virtual ~CheckpointDevice() = default;
  virtual std::string Name() const = 0;
  virtual Status Setup() = 0;
  virtual Status Postsuspend(uint64_t epoch) = 0;
  virtual Status Preresume(uint64_t epoch) = 0;
  virtual Status Commit(uint64_t epoch) = 0;
  virtual void Teardown() = 0;
};

}  // namespace ftsync

#endif  // FTSYNC_CHECKPOINT_DEVICE_H_
