// ftsync testing: an in-memory Domain with exact dirty tracking.
//
// FakeDomain keeps guest memory in a byte vector and a small CPU/device
// state blob. Tests and workloads write guest memory through Write()/Fill();
// while dirty logging is on, every such write sets the frame's bit, and
// FetchAndClearDirty() reports exactly those frames (no extras), so a test
// can compare the engine's view against an independent record of writes.
//
// The fake is strict where a real hypervisor would silently misbehave: a
// guest write while suspended is refused and counted (the engine under test
// resumed too late or read memory too early), and calls made in the wrong
// state return kFailedPrecondition.
//
// Used from one thread at a time, like every Domain.
#ifndef FTSYNC_TESTING_FAKE_DOMAIN_H_
#define FTSYNC_TESTING_FAKE_DOMAIN_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/hypervisor.h"
#include "ftsync/status.h"

namespace ftsync::testing {

class FakeDomain : public Domain {
 public:
  // Bytes of CPU/device state. The first 8 bytes hold the little-endian
  // count of guest writes executed so far (the "instruction counter").
  static constexpr size_t kStateSize = 256;
  // Byte written to `dst` for a frame that ReadFrames could not read, so a
  // caller that uses those bytes anyway produces a visible pattern.
  static constexpr uint8_t kPoisonByte = 0xEE;

  // Calls per method and guest activity, for assertions.
  struct Counters {
    uint64_t enable_dirty_log = 0;
    uint64_t disable_dirty_log = 0;
    uint64_t fetch_and_clear_dirty = 0;
    uint64_t redirty = 0;
    uint64_t peek_dirty = 0;
    uint64_t rearm_dirty = 0;
    uint64_t frames_rearmed = 0;  // pfns listed by successful RearmDirty calls
    uint64_t suspend = 0;
    uint64_t resume = 0;
    uint64_t read_frames = 0;   // ReadFrames calls
    uint64_t frames_read = 0;   // frames successfully copied by ReadFrames
    uint64_t save_state = 0;
    uint64_t restore_state = 0;
    uint64_t pages_written = 0;     // successful Write()/Fill() calls
    uint64_t bytes_written = 0;     // bytes stored by those calls
    uint64_t suspended_writes = 0;  // Write()/Fill() refused: domain suspended
  };

  // A running domain of `frames` frames of `page_size` bytes, dirty logging
  // off. Memory and state are filled with pseudo-random bytes derived from
  // `seed` only, so two domains built with the same arguments are equal.
  // Requires frames > 0 and page_size > 0.
  explicit FakeDomain(uint64_t frames, size_t page_size = 4096,
                      std::string name = "fake", uint64_t seed = 1);

  FakeDomain(const FakeDomain&) = delete;
  FakeDomain& operator=(const FakeDomain&) = delete;

  // Domain. Preconditions beyond hypervisor.h, all kFailedPrecondition:
  //   FetchAndClearDirty, Redirty  dirty logging on;
  //   Suspend                      running;   Resume  suspended;
  //   SaveState                    suspended.
  //   PeekDirty, RearmDirty        dirty logging on, and the capability
  //                                enabled (see SetSpeculationSupport;
  //                                kNotSupported otherwise).
  // Argument errors are kInvalidArgument: null `out`/`dst`, a Redirty or
  // RearmDirty pfn >= FrameCount() (then no bit changes), errors.size() !=
  // pfns.size().
  // PeekDirty copies the pending log exactly (no extras); RearmDirty clears
  // the listed frames' bits. Guest writes are synchronous, so no write can
  // race with either.
  // ReadFrames works on a running or suspended domain; a pfn >= FrameCount()
  // gives errors[i] = EINVAL, a frame marked by SetUnreadable gives EFAULT;
  // such frames' bytes in `dst` are set to kPoisonByte.
  // RestoreState accepts only a blob from SaveState of a domain with the
  // same frame count and page size; anything else (wrong size, bad magic or
  // version, checksum mismatch, other shape) is kInvalidArgument and leaves
  // the state unchanged. It has no suspended precondition.
  std::string Name() const override { return name_; }
  size_t PageSize() const override { return page_size_; }
  uint64_t FrameCount() const override { return frames_; }
  Status EnableDirtyLog() override;
  Status DisableDirtyLog() override;
  Status FetchAndClearDirty(DirtyBitmap* out) override;
  Status Redirty(std::span<const uint64_t> pfns) override;
  bool SupportsPeekDirty() const override { return can_peek_; }
  bool SupportsRearmDirty() const override { return can_peek_ && can_rearm_; }
  Status PeekDirty(DirtyBitmap* out) override;
  Status RearmDirty(std::span<const uint64_t> pfns) override;
  Status Suspend() override;
  Status Resume() override;
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                    std::span<int> errors) override;
  Result<std::vector<uint8_t>> SaveState() override;
  Status RestoreState(std::span<const uint8_t> state) override;

  // Guest side.

  // Stores `data` at byte `offset` of frame `pfn`, as the running guest
  // would, and advances the CPU state. Sets the frame's dirty bit when
  // logging is on. Errors: kFailedPrecondition when suspended (nothing is
  // written; counters().suspended_writes is incremented), kInvalidArgument
  // when pfn >= FrameCount() or offset + data.size() > PageSize(). An empty
  // `data` that passes those checks is a no-op.
  Status Write(uint64_t pfn, size_t offset, std::span<const uint8_t> data);
  // Sets every byte of frame `pfn` to `byte`: a whole-page Write with the
  // same effects and preconditions. A refused Fill (suspended domain or
  // pfn out of range) changes nothing; the suspended case is counted in
  // counters().suspended_writes.
  void Fill(uint64_t pfn, uint8_t byte);

  // Test hook: which speculative-transfer calls the domain offers, to
  // imitate a backend without them (peek=false: like the Domain defaults)
  // or one that can peek but not re-arm (like Xen). Both are on by
  // default. rearm is only offered together with peek.
  void SetSpeculationSupport(bool peek, bool rearm) {
    can_peek_ = peek;
    can_rearm_ = rearm;
  }

  // Test hook: while set, ReadFrames reports EFAULT for `pfn`. Requires
  // pfn < FrameCount() (other values are ignored).
  void SetUnreadable(uint64_t pfn, bool unreadable);

  // The bytes of frame `pfn`; empty when pfn >= FrameCount().
  std::span<const uint8_t> Frame(uint64_t pfn) const;
  // All of guest memory, frame `pfn` at offset pfn * PageSize().
  const std::vector<uint8_t>& memory() const { return memory_; }
  // The CPU/device state (kStateSize bytes); changes with every guest write.
  const std::vector<uint8_t>& state() const { return state_; }
  // The instruction counter held in the first 8 bytes of state().
  uint64_t state_counter() const;

  bool suspended() const { return suspended_; }
  bool dirty_log_enabled() const { return logging_; }
  // The pending dirty log, without clearing it (size FrameCount()).
  const DirtyBitmap& pending_dirty() const { return dirty_; }
  const Counters& counters() const { return counters_; }

 private:
  // Checks a guest write of `len` bytes at `offset` in `pfn`.
  Status CheckGuestWrite(uint64_t pfn, size_t offset, size_t len);
  // Bookkeeping after a guest write stored `len` bytes in `pfn`.
  void AfterGuestWrite(uint64_t pfn, size_t len);

  const uint64_t frames_;
  const size_t page_size_;
  const std::string name_;
  std::vector<uint8_t> memory_;
  std::vector<uint8_t> state_;
  DirtyBitmap dirty_;
  std::unordered_set<uint64_t> unreadable_;
  bool logging_ = false;
  bool suspended_ = false;
  bool can_peek_ = true;
  bool can_rearm_ = true;
  Counters counters_;
};

// A Hypervisor whose domains are FakeDomains registered by the test.
class FakeHypervisor : public Hypervisor {
 public:
  std::string Name() const override { return "fake"; }

  // Registers `domain` under `id`, replacing any domain of that id.
  void Add(const std::string& id, std::shared_ptr<FakeDomain> domain);
  // The domain registered under `id`, or null.
  std::shared_ptr<FakeDomain> Get(const std::string& id) const;

  // A Domain that forwards every call to the FakeDomain registered under
  // `id`; it shares ownership, so it stays valid after the hypervisor goes.
  // kNotFound "no domain named 'x' on fake hypervisor" for an unknown id.
  Result<std::unique_ptr<Domain>> OpenDomain(const std::string& id) override;

 private:
  std::map<std::string, std::shared_ptr<FakeDomain>> domains_;
};

}  // namespace ftsync::testing

#endif  // FTSYNC_TESTING_FAKE_DOMAIN_H_
