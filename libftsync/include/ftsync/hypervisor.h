// ftsync: the seam between the replication engines and a hypervisor.
//
// The engines (Checkpointer, Receiver) never call a hypervisor directly; they
// drive a Domain. Backends (QEMU, Xen) implement it; tests use the in-memory
// FakeDomain and the ErrorInjectingDomain wrapper (libftsync/testing/).
//
// A Domain is used from one thread at a time.
#ifndef FTSYNC_HYPERVISOR_H_
#define FTSYNC_HYPERVISOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/status.h"

namespace ftsync {

class Domain {
 public:
  virtual ~Domain() = default;

  // Human-readable identity, for messages ("fake:3", "xen:7", "qemu:pid 42").
  virtual std::string Name() const = 0;
  // Bytes per guest frame (4096 on x86). Constant for the Domain's life.
  virtual size_t PageSize() const = 0;
  // Number of guest frames; frame numbers are 0 .. FrameCount()-1.
  virtual uint64_t FrameCount() const = 0;

  // Starts dirty logging. On success every frame written from now on is
  // reported by the next FetchAndClearDirty. Idempotent.
  virtual Status EnableDirtyLog() = 0;
  // Stops dirty logging. Idempotent; safe after a failed Enable.
  virtual Status DisableDirtyLog() = 0;

  // Requires dirty logging on. Resizes `out` to FrameCount() and sets the
  // bit of every frame written since the previous fetch (or since
  // EnableDirtyLog), then clears the log. May report extra frames, never
  // misses one. On failure `out` is unspecified and the log is unchanged.
  virtual Status FetchAndClearDirty(DirtyBitmap* out) = 0;

  // Puts frames back into the dirty log, so the next FetchAndClearDirty
  // reports them again. Used when pages fetched for an epoch could not be
  // sent: a dirty bit is never lost.
  virtual Status Redirty(std::span<const uint64_t> pfns) = 0;

  // Stops the guest's vCPUs (and device emulation that writes guest
  // memory). Requires a running domain.
  virtual Status Suspend() = 0;
  // Restarts a suspended domain.
  virtual Status Resume() = 0;

  // Copies the contents of frames `pfns[i]` to `dst + i * PageSize()`.
  // `errors` must have pfns.size() elements; errors[i] is 0 on success or a
  // positive errno for a frame that could not be read (its bytes in `dst`
  // are unspecified). The returned Status is non-OK only when the call as a
  // whole failed (then `errors` is unspecified).
  virtual Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                            std::span<int> errors) = 0;

  // Saves CPU and device state as an opaque blob. Requires a suspended
  // domain.
  virtual Result<std::vector<uint8_t>> SaveState() = 0;
  // Loads a blob produced by SaveState of a domain of the same shape.
  virtual Status RestoreState(std::span<const uint8_t> state) = 0;
};

// Opens domains by name. A backend's entry point.
class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual std::string Name() const = 0;
  // Returns kNotFound with a message naming `id` when there is no such
  // domain.
  virtual Result<std::unique_ptr<Domain>> OpenDomain(const std::string& id) = 0;
};

}  // namespace ftsync

#endif  // FTSYNC_HYPERVISOR_H_
