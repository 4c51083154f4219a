// ftsync: the Xen backend (Xen 4.17 libxc, run in dom0 as root).
//
//   XenDomain   the Domain seam over a running HVM or PVH guest:
//     FrameCount      xc_domain_maximum_gpfn + 1 (not nr_pages: a guest's
//                     frames are not contiguous; PVH/HVM guests have holes
//                     and special pages (xenstore, console, ...) just below
//                     gfn 0xff000, so nr_pages would miss frames, and the
//                     contract says a frame is never missed). The span can
//                     be far larger than the guest's RAM (a 128 MB PVH guest
//                     spans ~4 GiB of gfns); XenDomainOptions::max_frames
//                     caps it for tests that keep the replica in RAM.
//     Enable/DisableDirtyLog  xc_shadow_control(ENABLE_LOGDIRTY / OFF);
//                     log-dirty already on (EINVAL on 4.17 HAP) is adopted.
//                     Needs HAP (HVM/PVH) or shadow paging; the Debian
//                     4.17.7 hypervisor compiles shadow paging out, so a
//                     PV guest fails with errno 95 (kNotSupported).
//     FetchAndClearDirty  xc_logdirty_control(CLEAN) into a hypercall
//                     buffer, whose layout (bit pfn%64 of 64-bit word
//                     pfn/64, little-endian unsigned long) is DirtyBitmap's;
//                     merged with the software bitmap Redirty fills.
//     Suspend/Resume  xc_domain_pause / xc_domain_unpause (see xen_domain.cc
//                     for why this is a consistent checkpoint for PVH).
//     ReadFrames      xenforeignmemory_map(PROT_READ) by gfn, per-frame
//                     err[] -> errors[i], memcpy, unmap.
//     SaveState/RestoreState  xc_domain_hvm_getcontext / setcontext: the
//                     HVM/PVH CPU context blob (per-vCPU registers, LAPIC,
//                     MTRR, timers...; Xen's HVM save format, opaque here).
//                     No device-model state: PVH has no device model.
//
// Untracked writes: Xen rewrites the guest's registered vcpu_info (time
// info) without marking it in the log (see CalibrateUntrackedWrites); set
// XenDomainOptions::calibrate_rounds (the nested-Xen test uses 2) or the
// replica can differ in that frame.
//
// Libraries: -lxenctrl -lxenforeignmemory. libftsync references them weakly
// (it still links with -Wl,--no-undefined on hosts without them, and
// Open() then fails with kNotSupported), so link them with
// -Wl,--no-as-needed: Debian's default --as-needed drops a library that
// only satisfies weak references. Every failure names the libxc
// call and errno: no such domain (kNotFound), not privileged (EPERM/EACCES
// opening /dev/xen/privcmd: kIoError "run as root in dom0"), log-dirty not
// supported (EOPNOTSUPP, kNotSupported).
#ifndef FTSYNC_XEN_H_
#define FTSYNC_XEN_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/hypervisor.h"
#include "ftsync/status.h"

namespace ftsync {

struct XenDomainOptions {
  // 0: FrameCount = max gpfn + 1. Otherwise at most this many frames
  // (frames above are then NOT replicated; for tests only).
  uint64_t max_frames = 0;
  // Rounds of CalibrateUntrackedWrites run by EnableDirtyLog (0: none).
  int calibrate_rounds = 0;
};

class XenDomain : public Domain {
 public:
  // Opens domain `domid` (must exist; dom0 itself is refused).
  static Result<std::unique_ptr<XenDomain>> Open(uint32_t domid, XenDomainOptions options = {});
  ~XenDomain() override;
  XenDomain(const XenDomain&) = delete;
  XenDomain& operator=(const XenDomain&) = delete;

  std::string Name() const override;
  size_t PageSize() const override { return 4096; }
  uint64_t FrameCount() const override { return frames_; }

  Status EnableDirtyLog() override;
  Status DisableDirtyLog() override;
  Status FetchAndClearDirty(DirtyBitmap* out) override;
  Status Redirty(std::span<const uint64_t> pfns) override;
  Status Suspend() override;
  Status Resume() override;
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) override;
  Result<std::vector<uint8_t>> SaveState() override;
  Status RestoreState(std::span<const uint8_t> state) override;

  // Xen writes some guest frames behind log-dirty's back: the vcpu_info
  // a PVH/HVM guest registered (VCPUOP_register_vcpu_info; its
  // vcpu_time_info is rewritten whenever the vCPU is scheduled) and the
  // runstate area. Measured on 4.17: one frame of a 1-vCPU Linux PVH guest
  // differed from the replica after 10 exact epochs. This finds such frames:
  // per round, paused snapshot (hash of every frame) -> run ~50 ms ->
  // paused snapshot + CLEAN; a frame whose contents changed but that the log
  // did not report is untracked, and is reported dirty by every later
  // FetchAndClearDirty. Requires dirty logging on and a running domain;
  // harvested bits are kept (put back). Costs two full reads per round.
  Status CalibrateUntrackedWrites(int rounds);
  // Frames found by CalibrateUntrackedWrites.
  const std::vector<uint64_t>& untracked_frames() const { return untracked_; }

  uint32_t domid() const { return domid_; }
  // xc_domain_maximum_gpfn as read at Open (before any max_frames cap).
  uint64_t max_gpfn() const { return max_gpfn_; }
  // Pages the domain owns (tot_pages) at Open.
  uint64_t nr_pages() const { return nr_pages_; }
  // Dirty frames the hypervisor reported at the last FetchAndClearDirty
  // (before merging the software bitmap and before any max_frames cap).
  uint64_t last_hw_dirty() const { return last_hw_dirty_; }

 private:
  struct Handles;
  XenDomain(uint32_t domid, std::unique_ptr<Handles> h, uint64_t frames, uint64_t max_gpfn,
            uint64_t nr_pages);

  uint32_t domid_;
  std::unique_ptr<Handles> h_;
  uint64_t frames_;
  uint64_t max_gpfn_;
  uint64_t nr_pages_;
  bool logdirty_on_ = false;
  bool paused_ = false;
  uint64_t last_hw_dirty_ = 0;
  DirtyBitmap redirty_;
  std::vector<uint64_t> untracked_;
  DirtyBitmap last_hw_bits_;  // what the last CLEAN reported
  int calibrate_rounds_ = 0;
  Status HashAll(std::vector<uint64_t>* hashes);
  Status EnsureBitmap();
};

}  // namespace ftsync

#endif  // FTSYNC_XEN_H_
