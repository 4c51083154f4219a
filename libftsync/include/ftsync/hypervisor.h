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

  // ---- Speculative transfer (optional) ---------------------------------
  //
  // While the guest runs, an engine may look at the dirty log without
  // ending the epoch (PeekDirty), pick pages it predicts will not be
  // written again before the epoch ends, re-arm their tracking
  // (RearmDirty) and send copies of them early. At the epoch's end,
  // FetchAndClearDirty then reports only the re-armed pages written again
  // after their re-arm (plus every page never re-armed that was written).
  //
  // A backend that cannot do these returns false from the Supports*
  // queries and kNotSupported from the calls (the defaults below), so
  // every existing Domain keeps compiling and an engine falls back to
  // plain epochs. A backend may support Peek without Rearm (Xen's
  // log-dirty PEEK reads the bitmap but cannot clear single frames): then
  // an early copy is still useful as the base of a delta, but every page
  // written during the epoch is reported at its end, sent early or not.

  // True when PeekDirty works (with dirty logging on). Constant for the
  // Domain's life.
  virtual bool SupportsPeekDirty() const { return false; }
  // True when RearmDirty works (with dirty logging on). Implies
  // SupportsPeekDirty(). Constant for the Domain's life.
  virtual bool SupportsRearmDirty() const { return false; }

  // Requires dirty logging on. Resizes `out` to FrameCount() and sets the
  // bit of every frame FetchAndClearDirty would report if it were called
  // now (frames written since the previous fetch or since their re-arm,
  // frames put back by Redirty), WITHOUT clearing anything: the epoch goes
  // on, and the same frames are reported again by the next PeekDirty or
  // FetchAndClearDirty. May report extra frames, never misses one written
  // before the call began (a write racing with the call may or may not be
  // in `out`; it is reported later either way). On failure `out` is
  // unspecified and the log is unchanged.
  // Default: kNotSupported.
  virtual Status PeekDirty(DirtyBitmap* out);

  // Requires dirty logging on; every pfn < FrameCount() (kInvalidArgument
  // otherwise, and nothing changes). Any order and duplicates are
  // accepted; ascending order is fastest (a backend may coalesce runs).
  // Effect on success: the listed frames are no longer dirty (neither
  // PeekDirty nor FetchAndClearDirty reports them, including a pending
  // Redirty of them) until they are written again; tracking is re-armed,
  // so a write after the re-arm is reported by the next PeekDirty or
  // FetchAndClearDirty. Other frames are untouched.
  //
  // Race guarantee: a guest write that races with the re-arm is never
  // lost. It either completes before the re-arm takes effect on its frame
  // (then a read of the frame that starts after RearmDirty returned sees
  // its bytes), or it happens after (then the frame is reported dirty
  // again). Hence what the caller may assume:
  //   - Contents read AFTER RearmDirty returned: if the frame is not
  //     reported dirty by a later PeekDirty/FetchAndClearDirty, those
  //     contents are exactly the frame's contents at that later call. If
  //     it is reported, the copy may be stale or even torn (a mix of old
  //     and new bytes of a concurrent write) and must be superseded by a
  //     fresh read (or by a delta computed against that very copy).
  //   - Contents read BEFORE the re-arm carry no guarantee: a write
  //     between the read and the re-arm is cleared by the re-arm and never
  //     reported, so the copy would silently go stale.
  // So a speculative send is: RearmDirty(pfns), then ReadFrames(pfns),
  // then send. With the guest suspended the order does not matter.
  //
  // On failure: no dirty state is lost. Some listed frames may have been
  // re-armed, but every listed frame that was dirty is still reported by
  // the next FetchAndClearDirty (as after Redirty), so a caller that
  // treats the failed frames as not sent is safe.
  // Default: kNotSupported.
  virtual Status RearmDirty(std::span<const uint64_t> pfns);

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

inline Status Domain::PeekDirty(DirtyBitmap* /*out*/) {
  return Status(Errc::kNotSupported,
                Name() + ": PeekDirty: this backend cannot read the dirty "
                         "log without clearing it");
}

inline Status Domain::RearmDirty(std::span<const uint64_t> /*pfns*/) {
  return Status(Errc::kNotSupported,
                Name() + ": RearmDirty: this backend cannot re-arm dirty "
                         "tracking of single frames");
}

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
