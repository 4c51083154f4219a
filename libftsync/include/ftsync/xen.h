// ftsync: the Xen backend (Xen 4.17 libxc, run in dom0 as root).
//
//   XenDomain   the Domain seam over a running HVM or PVH guest:
//     FrameCount      the domain's populated guest frames. Open scans every
//                     gfn in [0, max_gpfn] once (XEN_DOMCTL_getpageframeinfo3,
//                     1024 gfns per call) and numbers the populated ones
//                     densely: frame i is the i-th populated gfn (layout()).
//                     A PVH/HVM guest's gfn span has holes (a 128 MB PVH
//                     guest spans 0xff000 gfns, ~4 GiB: RAM below 128 MB plus
//                     special pages just below gfn 0xff000), so the replica
//                     holds only real frames (memory.img ~ the guest's RAM,
//                     nothing for the holes). Xen's own pages mapped into the
//                     physmap (shared info, grant frames) count as holes, as
//                     in Xen's own save. A gfn populated after Open (balloon
//                     up, memory hotplug) is caught, never silently missed:
//                     FetchAndClearDirty sees its dirty bit outside the
//                     layout (or max_gpfn grown) and fails with
//                     kFailedPrecondition ("layout changed: resynchronise"),
//                     having put every in-layout bit back. A layout frame
//                     that stops being mappable (balloon down) reads as a
//                     per-frame error (the Checkpointer sends zeros); open
//                     the domain again after ballooning down.
//     Enable/DisableDirtyLog  xc_shadow_control(ENABLE_LOGDIRTY / OFF);
//                     log-dirty already on (EINVAL on 4.17 HAP) is adopted.
//                     Needs HAP (HVM/PVH) or shadow paging; the Debian
//                     4.17.7 hypervisor compiles shadow paging out, so a
//                     PV guest fails with errno 95 (kNotSupported).
//     FetchAndClearDirty  xc_logdirty_control(CLEAN) over the gfn span into a
//                     hypercall buffer, mapped to frames through the layout;
//                     merged with the software bitmap Redirty fills.
//     PeekDirty       xc_logdirty_control(PEEK): the same bits, log not
//                     cleared. Xen cannot re-protect single pages, so a
//                     per-page re-arm is not offered.
//     Suspend/Resume  XenSuspend::kPause: xc_domain_pause/unpause (< 1 ms;
//                     memory-consistent, see xen_domain.cc; NOT restorable
//                     by Xen's restore path for a PV-aware guest, whose
//                     event channels, timers and vcpu_info live in the
//                     hypervisor). XenSuspend::kCooperative: the guest's own
//                     suspend (xenstore control/shutdown = "suspend", wait
//                     for SHUTDOWN_suspend) and fast resume
//                     (xc_domain_resume(fast=1): the guest sees a cancelled
//                     suspend and carries on); a checkpoint taken so is a
//                     standard suspended image: restored elsewhere, the guest
//                     sees a completed suspend and reconnects everything.
//                     Costs 100-350 ms per checkpoint nested; what Remus does.
//     ReadFrames      frames -> gfns, xenforeignmemory_map(PROT_READ),
//                     per-frame err[] -> errors[i], memcpy, unmap.
//     SaveState       everything a restore needs (xen/xen_state.h): HVM
//                     context (xc_domain_hvm_getcontext: per-vCPU registers,
//                     LAPIC, MTRR, timers...), the HVM params Xen's own save
//                     sends, TSC info, vCPU count, memory limits, CPUID/MSR
//                     policy, the frame layout, and whether the guest sat in
//                     a cooperative suspend. RestoreState loads the HVM
//                     context of such a blob into a live domain of the same
//                     shape (xc_domain_hvm_setcontext).
//
//   HVM domains: a domain whose device model (qemu-xen, started by libxl in
//   dom0) is registered in xenstore gets it driven over its QMP socket, as
//   Xen's own save and Remus drive it (src/xen/device_model.h):
//   EnableDirtyLog also switches on QEMU's dirty log (its emulated DMA
//   into guest memory is then logged); Suspend stops the devices after the
//   vCPUs; SaveState adds the devices' state (xen-save-devices-state, a
//   QEMU migration stream) and the device model's physmap keys; Resume
//   continues the devices before the vCPUs. The QMP connection is held
//   only from Suspend to Resume. An HVM guest must run Xen's PV drivers
//   (any Linux with CONFIG_XEN_PVHVM) for kCooperative, as for xl save.
//
//   RestoreXenDomainFromReplica  failover: a new domain from a replica's
//                     last complete epoch, through libxl's restore path (see
//                     below).
//
// Untracked writes: Xen rewrites the guest's registered vcpu_info (time
// info) without marking it in the log (see CalibrateUntrackedWrites); set
// XenDomainOptions::calibrate_rounds (the nested-Xen test uses 2) or the
// replica can differ in that frame.
//
// Libraries: -lxenctrl -lxenforeignmemory -lxenguest -lxenstore (XEN_LIBS,
// mk/xen.mk). libftsync references them weakly (it still links with
// -Wl,--no-undefined on hosts without them, and Open() then fails with
// kNotSupported), so link them with -Wl,--no-as-needed: Debian's default
// --as-needed drops a library that only satisfies weak references. Every
// failure names the libxc call and errno: no such domain (kNotFound), not
// privileged (EPERM/EACCES opening /dev/xen/privcmd: kIoError "run as root
// in dom0"), log-dirty not supported (EOPNOTSUPP, kNotSupported).
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

namespace xen {
class XenDeviceModel;  // src/xen/device_model.h
}

enum class XenSuspend {
  kPause,        // xc_domain_pause / unpause
  kCooperative,  // guest suspend via xenstore + xc_domain_resume(fast)
};

struct XenDomainOptions {
  // Rounds of CalibrateUntrackedWrites run by EnableDirtyLog (0: none).
  int calibrate_rounds = 0;
  XenSuspend suspend = XenSuspend::kPause;
  // kCooperative: how long the guest may take to reach SHUTDOWN_suspend.
  int suspend_timeout_ms = 10000;
  // HVM domains with a device model (qemu-xen): its QMP socket (empty:
  // libxl's /var/run/xen/qmp-libxl-DOMID) and where it writes its device
  // state for each checkpoint (empty: /var/lib/xen/ftsync-dm-save.DOMID).
  std::string dm_qmp_path;
  std::string dm_save_path;
  // False: leave an HVM domain's device model alone (Suspend pauses only
  // the vCPUs, SaveState has no device state). For a second handle on a
  // domain that another one replicates: QEMU serves one QMP client at a
  // time.
  bool drive_device_model = true;
};

// What xc_domain_getinfo says about a domain right now.
struct XenRunState {
  bool exists = false;
  bool paused = false;     // xc_domain_pause / xl pause
  bool shutdown = false;   // shut down (suspended when shutdown_reason == 2)
  uint32_t shutdown_reason = 0;
  bool running = false;
  bool blocked = false;
  bool crashed = false;
  // Neither paused nor shut down: the guest can run.
  bool can_run() const { return exists && !paused && !shutdown && !crashed; }
};
// Cheap (one domctl); for samplers and tests. kIoError when libxc fails.
Result<XenRunState> GetXenRunState(uint32_t domid);

// A run of populated guest frames: gfns [gfn, gfn + count).
struct XenGfnRange {
  uint64_t gfn;
  uint64_t count;
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
  // XEN_DOMCTL_SHADOW_OP_PEEK: what FetchAndClearDirty would report now
  // (untracked and Redirty'd frames included), nothing cleared.
  bool SupportsPeekDirty() const override { return true; }
  Status PeekDirty(DirtyBitmap* out) override;
  // Xen's log-dirty cannot re-protect single frames: RearmDirty keeps the
  // seam's default (kNotSupported) and SupportsRearmDirty() false.
  Status Redirty(std::span<const uint64_t> pfns) override;
  Status Suspend() override;
  Status Resume() override;
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) override;
  Result<std::vector<uint8_t>> SaveState() override;
  Status RestoreState(std::span<const uint8_t> state) override;

  // Xen writes some guest frames behind log-dirty's back (measured on 4.17
  // nested: a Linux PVH guest's replica differed by single bytes in three
  // frames after an exact final epoch): the registered vcpu_info (time
  // info; evtchn_upcall_pending), the FIFO event-channel event words and
  // per-vCPU control blocks. This finds such frames by hashing every frame
  // around windows where only Xen can write (domain paused ~1.2 s: pending
  // bits of timer events) and short running windows (vcpu_info time) and
  // keeping the frames that changed unreported; they are reported dirty by
  // every later FetchAndClearDirty. Requires dirty logging on and a running
  // domain; harvested bits are kept (put back). Costs three full reads and
  // ~1.3 s per round.
  Status CalibrateUntrackedWrites(int rounds);
  // Whether `gfn` is populated guest memory (false for holes and for Xen's
  // own pages mapped into the physmap, e.g. shared info, grant frames).
  Result<bool> IsGuestFrame(uint64_t gfn);
  // Frames found by CalibrateUntrackedWrites.
  const std::vector<uint64_t>& untracked_frames() const { return untracked_; }

  uint32_t domid() const { return domid_; }
  // xc_domain_maximum_gpfn as read at Open.
  uint64_t max_gpfn() const { return max_gpfn_; }
  // The populated gfns, ascending; frame i is the i-th gfn they enumerate.
  const std::vector<XenGfnRange>& layout() const { return layout_; }
  // ReadFrames by guest frame number, any gfn (holes give per-frame errors).
  Status ReadGfns(std::span<const uint64_t> gfns, uint8_t* dst, std::span<int> errors);
  // Guest frame number of frame `frame` (< FrameCount()).
  uint64_t GfnOfFrame(uint64_t frame) const { return gfn_of_[frame]; }
  // Pages the domain owns (tot_pages) at Open.
  uint64_t nr_pages() const { return nr_pages_; }
  // True for an HVM domain with a device model (see the header comment).
  bool has_device_model() const { return dm_ != nullptr; }
  // Dirty gfns the hypervisor reported at the last FetchAndClearDirty
  // (before merging the software bitmap).
  uint64_t last_hw_dirty() const { return last_hw_dirty_; }

 private:
  struct Handles;
  XenDomain(uint32_t domid, std::unique_ptr<Handles> h, std::vector<XenGfnRange> layout,
            uint64_t max_gpfn, uint64_t nr_pages, XenDomainOptions options);

  uint32_t domid_;
  std::unique_ptr<Handles> h_;
  std::vector<XenGfnRange> layout_;
  std::vector<uint64_t> gfn_of_;
  XenDomainOptions options_;
  uint64_t frames_;
  uint64_t max_gpfn_;
  uint64_t nr_pages_;
  bool logdirty_on_ = false;
  bool paused_ = false;
  uint64_t last_hw_dirty_ = 0;
  DirtyBitmap redirty_;
  std::vector<uint64_t> untracked_;
  DirtyBitmap last_hw_bits_;  // what the last CLEAN reported
  bool suspended_ = false;  // cooperative suspend in effect
  Status HashAll(std::vector<uint64_t>* hashes);
  Status EnsureBitmap();
  Status LogDirtyOp(int op, DirtyBitmap* out, bool clear);
  Status CooperativeSuspend();
  Status ResumeVcpus();
  Status ReadDeviceModelKeys(std::vector<uint8_t>* out);
  std::unique_ptr<xen::XenDeviceModel> dm_;  // HVM with qemu-xen only
};

// Failover: creates a new domain from `replica_dir`'s last complete epoch
// (memory.img + the state XenDomain::SaveState saved) and returns its domid.
struct XenRestoreOptions {
  std::string name;          // name of the new domain (xl config's name is replaced)
  std::string xl_config;     // path of the domain's xl config file (as given to xl create)
  bool paused = false;       // leave the new domain paused
};
// Creates a new domain from `replica_dir`'s last complete epoch (memory.img +
// saved CPU/platform state) and returns its domid.
//
// How: streams a standard Xen save image (xl save-file header + libxl v2 +
// libxc v3 migration stream, src/xen/migv2_writer.h) through a pipe into
// `xl restore [-p] /proc/self/fd/0` (no disk space needed), with the xl config
// (its `name` replaced by options.name) embedded in the image, so xenstore,
// console and devices come up as for any `xl restore`. Requires an epoch saved in
// XenSuspend::kCooperative mode (a paused-only checkpoint of a PV-aware
// guest cannot resume: kFailedPrecondition says so), `xl` in PATH, root in
// dom0. Errors: kNotFound (no complete epoch, no config file), kCorruption
// (state.bin not a Xen state, memory.img size not the layout's),
// kFailedPrecondition (not a cooperative checkpoint; a domain named options.name
// exists), kIoError with xl's own output when xl restore fails.
Result<uint32_t> RestoreXenDomainFromReplica(const std::string& replica_dir,
                                             const XenRestoreOptions& options);

}  // namespace ftsync

#endif  // FTSYNC_XEN_H_
