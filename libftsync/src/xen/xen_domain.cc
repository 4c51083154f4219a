// ftsync: XenDomain, the Domain seam over Xen 4.17's libxc (see xen.h).
//
// Two ways to stop the guest for a checkpoint (XenSuspend):
//  - kPause, xc_domain_pause: deschedules every vCPU synchronously, so
//    guest memory and the HVM context stop changing. A PVH guest has no
//    device model; dom0's PV backends write through grant copies, which Xen
//    logs, so the log stays exact while paused (two CLEANs in a row while
//    paused return 0 pages). The image is memory-consistent (the replica
//    equals the paused guest), but a PV-aware guest (every Linux on Xen)
//    keeps state in the hypervisor that no save stream carries: event
//    channel bindings (its timer VIRQ, IPIs, xenstore and console ports),
//    its registered vcpu_info and shared-info mapping. A domain restored
//    from such an image has no timer interrupt and no event channels; it
//    never runs again. < 1 ms nested.
//  - kCooperative, the guest's own suspend (what xl save / Remus use): the
//    guest's kernel quiesces its frontends and issues SCHEDOP_shutdown
//    (suspend); Resume is xc_domain_resume(fast=1), which makes that
//    hypercall return 1 ("cancelled") so the guest carries on without
//    reconnecting. Restored from the image, the hypercall returns 0 and the
//    guest rebinds everything. 100-350 ms nested.
#include "ftsync/xen.h"

#include "xen/device_model.h"
#include "xen/xen_state.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <chrono>

#include <xxhash.h>

// Xen's public headers need GNU extensions (anonymous unions, aligned
// attributes) and refuse a strict -std=c++20 (__STRICT_ANSI__); g++ accepts
// the extensions all the same, so hide the macro for these headers only.
#pragma push_macro("__STRICT_ANSI__")
#undef __STRICT_ANSI__
extern "C" {
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#include <xenstore.h>
// Exported by libxenctrl 4.17 (XEN_DOMCTL_getpageframeinfo3) but declared
// only in its private header.
int xc_get_pfn_type_batch(xc_interface* xch, uint32_t dom, unsigned int num, xen_pfn_t* arr);
}
#pragma pop_macro("__STRICT_ANSI__")

// Weak references: libftsync links (-Wl,--no-undefined) and runs on hosts
// without Xen's libraries; a program linked with -lxenctrl
// -lxenforeignmemory (or a libftsync.so built with them in FT_LIBS) binds
// them normally. Open() reports kNotSupported when they are absent.
#pragma weak xc_interface_open
#pragma weak xc_interface_close
#pragma weak xc_domain_getinfo
#pragma weak xc_domain_maximum_gpfn
#pragma weak xc_shadow_control
#pragma weak xc_logdirty_control
#pragma weak xc__hypercall_buffer_alloc_pages
#pragma weak xc__hypercall_buffer_free_pages
#pragma weak xc_domain_pause
#pragma weak xc_domain_unpause
#pragma weak xc_domain_hvm_getcontext
#pragma weak xc_domain_hvm_setcontext
#pragma weak xenforeignmemory_open
#pragma weak xenforeignmemory_close
#pragma weak xenforeignmemory_map
#pragma weak xenforeignmemory_unmap
#pragma weak xc_get_pfn_type_batch
#pragma weak xc_hvm_param_get
#pragma weak xc_domain_get_tsc_info
#pragma weak xc_version
#pragma weak xc_domain_resume
#pragma weak xc_cpu_policy_init
#pragma weak xc_cpu_policy_destroy
#pragma weak xc_cpu_policy_get_domain
#pragma weak xc_cpu_policy_serialise
#pragma weak xs_open
#pragma weak xs_close
#pragma weak xs_write
#pragma weak xs_read
#pragma weak xs_resume_domain
#pragma weak xs_directory

namespace ftsync {
namespace {

// A xentoollog logger that drops libxc's own messages: every failure is
// reported through Status with the call's name and errno instead.
void NullVmessage(xentoollog_logger*, xentoollog_level, int, const char*, const char*,
                  va_list) {}
void NullDestroy(xentoollog_logger*) {}
xentoollog_logger g_null_logger = {NullVmessage, nullptr, NullDestroy};

Status XenErr(int err, const std::string& what, uint32_t domid) {
  std::string ctx = what + " (domain " + std::to_string(domid) + ")";
  if (err == EPERM || err == EACCES) ctx += ": not privileged (run as root in dom0)";
  if (err == EOPNOTSUPP)
    ctx += ": log-dirty not supported for this guest (PV guest on a hypervisor built "
           "without shadow paging? use PVH/HVM)";
  if (err == ESRCH) ctx += ": no such domain";
  return Status::FromErrno(err, ctx);
}

}  // namespace

struct XenDomain::Handles {
  xc_interface* xch = nullptr;
  xenforeignmemory_handle* fmem = nullptr;
  struct xs_handle* xsh = nullptr;
  // Hypercall-safe buffer for the log-dirty bitmap (allocated on first use).
  xc_hypercall_buffer_t bitmap{};
  int bitmap_pages = 0;

  ~Handles() {
    if (xch && bitmap.hbuf) xc__hypercall_buffer_free_pages(xch, &bitmap, bitmap_pages);
    if (xsh) xs_close(xsh);
    if (fmem) xenforeignmemory_close(fmem);
    if (xch) xc_interface_close(xch);
  }
};

namespace {

std::string Hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// Populated gfns of `domid` in [0, span): XEN_DOMCTL_getpageframeinfo3 in
// batches of 1024 (its limit). XTAB (not populated, or a Xen page mapped in
// the physmap) and BROKEN are holes.
Status ScanLayout(xc_interface* xch, uint32_t domid, uint64_t span,
                  std::vector<XenGfnRange>* layout) {
  layout->clear();
  constexpr unsigned kBatch = 1024;
  std::vector<xen_pfn_t> arr(kBatch);
  for (uint64_t base = 0; base < span; base += kBatch) {
    const unsigned n = static_cast<unsigned>(std::min<uint64_t>(kBatch, span - base));
    for (unsigned i = 0; i < n; ++i) arr[i] = base + i;
    if (xc_get_pfn_type_batch(xch, domid, n, arr.data()) != 0)
      return XenErr(errno, "xc_get_pfn_type_batch(gfn " + Hex(base) + ")", domid);
    for (unsigned i = 0; i < n; ++i) {
      const uint64_t type = arr[i] & XEN_DOMCTL_PFINFO_LTAB_MASK;
      if (type == XEN_DOMCTL_PFINFO_XTAB || type == XEN_DOMCTL_PFINFO_BROKEN) continue;
      const uint64_t gfn = base + i;
      if (!layout->empty() && layout->back().gfn + layout->back().count == gfn)
        ++layout->back().count;
      else
        layout->push_back({gfn, 1});
    }
  }
  return Status::OK();
}

}  // namespace

XenDomain::XenDomain(uint32_t domid, std::unique_ptr<Handles> h, std::vector<XenGfnRange> layout,
                     uint64_t max_gpfn, uint64_t nr_pages, XenDomainOptions options)
    : domid_(domid), h_(std::move(h)), layout_(std::move(layout)), options_(options),
      frames_(0), max_gpfn_(max_gpfn), nr_pages_(nr_pages) {
  for (const XenGfnRange& r : layout_)
    for (uint64_t i = 0; i < r.count; ++i) gfn_of_.push_back(r.gfn + i);
  frames_ = gfn_of_.size();
  redirty_.Resize(frames_);
}

XenDomain::~XenDomain() {
  if (paused_) (void)Resume();
  if (logdirty_on_) (void)DisableDirtyLog();
}

Result<std::unique_ptr<XenDomain>> XenDomain::Open(uint32_t domid, XenDomainOptions options) {
  if (domid == 0) return Status(Errc::kInvalidArgument, "xen: domain 0 cannot be protected");
  if (!xc_interface_open || !xenforeignmemory_open || !xc_logdirty_control ||
      !xenforeignmemory_map || !xc_domain_hvm_getcontext || !xc_get_pfn_type_batch)
    return Status(Errc::kNotSupported,
                  "xen: this program was linked without libxenctrl/libxenforeignmemory "
                  "(-lxenctrl -lxenforeignmemory -lxenguest -lxenstore)");
  if (options.suspend == XenSuspend::kCooperative && (!xs_open || !xc_domain_resume))
    return Status(Errc::kNotSupported,
                  "xen: cooperative suspend needs libxenstore and libxenguest (-lxenstore -lxenguest)");
  auto h = std::make_unique<Handles>();
  h->xch = xc_interface_open(&g_null_logger, &g_null_logger, 0);
  if (!h->xch) {
    const int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO)
      return Status(Errc::kNotSupported,
                    std::string("xen: xc_interface_open: no /dev/xen/privcmd (not a Xen dom0, "
                                "or xen-privcmd not loaded): ") + std::strerror(e));
    return XenErr(e, "xc_interface_open (/dev/xen/privcmd)", domid);
  }
  h->fmem = xenforeignmemory_open(&g_null_logger, 0);
  if (!h->fmem) return XenErr(errno, "xenforeignmemory_open", domid);

  xc_dominfo_t info{};
  int n = xc_domain_getinfo(h->xch, domid, 1, &info);
  if (n < 0) return XenErr(errno, "xc_domain_getinfo", domid);
  if (n != 1 || info.domid != domid)
    return Status(Errc::kNotFound, "xen: no such domain " + std::to_string(domid));
  if (info.dying) return Status(Errc::kNotFound, "xen: domain " + std::to_string(domid) + " is dying");
  if (!info.hvm)
    return Status(Errc::kNotSupported,
                  "xen: domain " + std::to_string(domid) +
                      " is PV; only HVM/PVH guests are supported (gfn-addressed foreign maps, "
                      "HAP log-dirty)");
  if (options.suspend == XenSuspend::kCooperative) {
    h->xsh = xs_open(0);
    if (!h->xsh) return XenErr(errno, "xs_open (xenstore, for cooperative suspend)", domid);
  } else if (xs_open) {
    h->xsh = xs_open(0);  // for the device model's keys; optional in pause mode
  }
  // An HVM domain has a device model (qemu-xen, in dom0); a PVH domain has
  // none. libxl records the type as /libxl/DOMID/type ("hvm", "pvh"); a
  // domain it did not create is HVM with a device model when qemu-xen
  // registered itself under /local/domain/0/device-model/DOMID. (libxl may
  // write that directory for a PVH domain too, so the type comes first.)
  bool has_dm = false;
  if (h->xsh && options.drive_device_model) {
    auto read = [&](const std::string& node) -> std::optional<std::string> {
      unsigned int len = 0;
      char* v = static_cast<char*>(xs_read(h->xsh, XBT_NULL, node.c_str(), &len));
      if (!v) return std::nullopt;
      std::string s(v, len);
      free(v);
      return s;
    };
    const std::optional<std::string> type = read("/libxl/" + std::to_string(domid) + "/type");
    if (type)
      has_dm = *type == "hvm";
    else
      has_dm = read("/local/domain/0/device-model/" + std::to_string(domid) + "/state").has_value();
  }

  xen_pfn_t max_gpfn = 0;
  if (xc_domain_maximum_gpfn(h->xch, domid, &max_gpfn) < 0)
    return XenErr(errno, "xc_domain_maximum_gpfn", domid);
  std::vector<XenGfnRange> layout;
  FTSYNC_RETURN_IF_ERROR(ScanLayout(h->xch, domid, uint64_t{max_gpfn} + 1, &layout));
  if (layout.empty())
    return Status(Errc::kNotFound, "xen: domain " + std::to_string(domid) + " has no populated frames");
  std::unique_ptr<XenDomain> d(
      new XenDomain(domid, std::move(h), std::move(layout), max_gpfn, info.nr_pages, options));
  if (has_dm) {
    xen::DeviceModelOptions dmo;
    dmo.qmp_path = options.dm_qmp_path.empty() ? xen::DefaultDeviceModelQmpPath(domid) : options.dm_qmp_path;
    dmo.save_path =
        options.dm_save_path.empty() ? xen::DefaultDeviceModelSavePath(domid) : options.dm_save_path;
    d->dm_ = std::make_unique<xen::XenDeviceModel>(dmo);
  }
  return d;
}

Result<XenRunState> GetXenRunState(uint32_t domid) {
  if (!xc_interface_open || !xc_domain_getinfo)
    return Status(Errc::kNotSupported, "xen: linked without libxenctrl");
  // One handle per thread, kept: opening privcmd costs more than the call.
  struct Holder {
    xc_interface* xch = nullptr;
    ~Holder() {
      if (xch) xc_interface_close(xch);
    }
  };
  thread_local Holder h;
  if (!h.xch) h.xch = xc_interface_open(&g_null_logger, &g_null_logger, 0);
  if (!h.xch) return XenErr(errno, "xc_interface_open", domid);
  xc_dominfo_t info{};
  int n = xc_domain_getinfo(h.xch, domid, 1, &info);
  if (n < 0) return XenErr(errno, "xc_domain_getinfo", domid);
  XenRunState st;
  if (n != 1 || info.domid != domid || info.dying) return st;
  st.exists = true;
  st.paused = info.paused;
  st.shutdown = info.shutdown;
  st.shutdown_reason = info.shutdown_reason;
  st.running = info.running;
  st.blocked = info.blocked;
  st.crashed = info.crashed;
  return st;
}

std::string XenDomain::Name() const { return "xen:" + std::to_string(domid_); }

Status XenDomain::EnableDirtyLog() {
  if (logdirty_on_) return Status::OK();  // idempotent for this handle
  int rc = xc_shadow_control(h_->xch, domid_, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, nullptr, 0);
  if (rc < 0 && (errno == EINVAL || errno == EBUSY)) {
    // Xen 4.17 with HAP answers EINVAL (not EBUSY) when log-dirty is
    // already on (another handle or process). Adopt it when a PEEK of zero
    // pages succeeds (it fails with EINVAL when log-dirty is off): the log
    // then reports at least every frame written from now on (extra frames
    // are allowed).
    const int saved = errno;
    Status b = EnsureBitmap();
    xc_shadow_op_stats_t stats{};
    if (b.ok() && xc_logdirty_control(h_->xch, domid_, XEN_DOMCTL_SHADOW_OP_PEEK, &h_->bitmap, 0,
                                      0, &stats) >= 0)
      rc = 0;
    else
      errno = saved;
  }
  if (rc < 0) return XenErr(errno, "xc_shadow_control(ENABLE_LOGDIRTY)", domid_);
  logdirty_on_ = true;
  if (dm_) {
    // The device model's own writes to guest memory (emulated DMA) are
    // logged only once it is told that a save is running.
    Status s = dm_->SetGlobalDirtyLog(true);
    if (!s.ok()) {
      (void)DisableDirtyLog();
      return s.Annotate(Name() + ": enable the device model's dirty log");
    }
  }
  if (options_.calibrate_rounds > 0) return CalibrateUntrackedWrites(options_.calibrate_rounds);
  return Status::OK();
}

Status XenDomain::HashAll(std::vector<uint64_t>* hashes) {
  constexpr size_t kChunk = 1024;
  hashes->assign(frames_, 0);
  std::vector<uint64_t> pfns;
  std::vector<uint8_t> buf(kChunk * 4096);
  std::vector<int> errs;
  for (uint64_t base = 0; base < frames_; base += kChunk) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, frames_ - base));
    pfns.resize(n);
    for (size_t i = 0; i < n; ++i) pfns[i] = base + i;
    errs.assign(n, 0);
    FTSYNC_RETURN_IF_ERROR(ReadFrames(pfns, buf.data(), errs));
    for (size_t i = 0; i < n; ++i)
      (*hashes)[base + i] = errs[i] ? 0 : XXH3_64bits(buf.data() + i * 4096, 4096);
  }
  return Status::OK();
}

// Per round, with raw xc_domain_pause (whatever the suspend mode):
//  1. paused: CLEAN, hash every frame, stay paused ~1.2 s, hash again,
//     CLEAN. The guest cannot write while paused, yet Xen keeps delivering
//     its timer and other events: it sets pending bits in the FIFO event
//     words, the per-vCPU control blocks' READY bits and vcpu_info's
//     evtchn_upcall_pending directly, unlogged. A frame that changed but
//     that the CLEAN did not report is untracked.
//  2. running ~50 ms, then paused: CLEAN and hash: a frame that changed
//     without being reported (vcpu_info's time, rewritten when the vCPU is
//     scheduled) is untracked too.
// Every harvested bit is kept (redirty_), so nothing is lost for the caller.
Status XenDomain::CalibrateUntrackedWrites(int rounds) {
  if (!logdirty_on_)
    return Status(Errc::kFailedPrecondition, Name() + ": CalibrateUntrackedWrites without dirty log");
  std::vector<uint64_t> a, b, c;
  DirtyBitmap bm;
  auto pause = [&]() -> Status {
    if (xc_domain_pause(h_->xch, domid_) < 0) return XenErr(errno, "xc_domain_pause", domid_);
    return Status::OK();
  };
  auto unpause = [&]() -> Status {
    if (xc_domain_unpause(h_->xch, domid_) < 0) return XenErr(errno, "xc_domain_unpause", domid_);
    return Status::OK();
  };
  auto harvest = [&]() -> Status {
    Status st = FetchAndClearDirty(&bm);
    if (st.ok()) redirty_.Merge(bm);
    return st;
  };
  auto note = [&](const std::vector<uint64_t>& x, const std::vector<uint64_t>& y) {
    for (uint64_t p = 0; p < frames_; ++p)
      if (x[p] != y[p] && !last_hw_bits_.Test(p) &&
          std::find(untracked_.begin(), untracked_.end(), p) == untracked_.end())
        untracked_.push_back(p);
  };
  for (int r = 0; r < rounds; ++r) {
    FTSYNC_RETURN_IF_ERROR(pause());
    Status st = harvest();
    if (st.ok()) st = HashAll(&a);
    if (st.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    if (st.ok()) st = HashAll(&b);
    if (st.ok()) st = harvest();
    if (st.ok()) note(a, b);
    Status rs = unpause();
    FTSYNC_RETURN_IF_ERROR(st);
    FTSYNC_RETURN_IF_ERROR(rs);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    FTSYNC_RETURN_IF_ERROR(pause());
    st = harvest();
    if (st.ok()) st = HashAll(&c);
    if (st.ok()) note(b, c);
    rs = unpause();
    FTSYNC_RETURN_IF_ERROR(st);
    FTSYNC_RETURN_IF_ERROR(rs);
  }
  std::sort(untracked_.begin(), untracked_.end());
  return Status::OK();
}

Result<bool> XenDomain::IsGuestFrame(uint64_t gfn) {
  xen_pfn_t one = gfn;
  if (xc_get_pfn_type_batch(h_->xch, domid_, 1, &one) != 0)
    return XenErr(errno, "xc_get_pfn_type_batch(" + Hex(gfn) + ")", domid_);
  const uint64_t type = one & XEN_DOMCTL_PFINFO_LTAB_MASK;
  return type != XEN_DOMCTL_PFINFO_XTAB && type != XEN_DOMCTL_PFINFO_BROKEN;
}

Status XenDomain::DisableDirtyLog() {
  if (dm_ && logdirty_on_) (void)dm_->SetGlobalDirtyLog(false);  // best effort: it may be gone
  int rc = xc_shadow_control(h_->xch, domid_, XEN_DOMCTL_SHADOW_OP_OFF, nullptr, 0);
  logdirty_on_ = false;
  if (rc < 0 && errno != ESRCH)  // the domain being gone leaves nothing to stop
    return XenErr(errno, "xc_shadow_control(OFF)", domid_);
  return Status::OK();
}

Status XenDomain::EnsureBitmap() {
  const uint64_t span = max_gpfn_ + 1;
  const size_t bytes = (span + 63) / 64 * 8;
  const int pages = static_cast<int>((bytes + 4095) / 4096);
  if (h_->bitmap.hbuf && h_->bitmap_pages >= pages) return Status::OK();
  if (h_->bitmap.hbuf) xc__hypercall_buffer_free_pages(h_->xch, &h_->bitmap, h_->bitmap_pages);
  h_->bitmap = xc_hypercall_buffer_t{};
  h_->bitmap_pages = 0;
  if (!xc__hypercall_buffer_alloc_pages(h_->xch, &h_->bitmap, pages))
    return XenErr(errno ? errno : ENOMEM, "xc_hypercall_buffer_alloc_pages (dirty bitmap)", domid_);
  h_->bitmap_pages = pages;
  return Status::OK();
}

// CLEAN or PEEK over the whole gfn span, mapped to frames through the
// layout. Dirty gfns outside the layout that are populated now mean the
// layout changed: the in-layout bits are put back (redirty_) and the call
// fails, so no write is lost and the caller resynchronises.
Status XenDomain::LogDirtyOp(int op, DirtyBitmap* out, bool clear) {
  if (!logdirty_on_)
    return Status(Errc::kFailedPrecondition,
                  Name() + (clear ? ": FetchAndClearDirty" : ": PeekDirty") + " without dirty log");
  static_assert(sizeof(unsigned long) == sizeof(uint64_t), "Xen bitmap words are unsigned long");
  const uint64_t span = max_gpfn_ + 1;
  const uint64_t words = (span + 63) / 64;
  FTSYNC_RETURN_IF_ERROR(EnsureBitmap());
  std::memset(h_->bitmap.hbuf, 0, words * 8);
  xc_shadow_op_stats_t stats{};
  long long rc = xc_logdirty_control(h_->xch, domid_, op, &h_->bitmap, span, 0, &stats);
  if (rc < 0)
    return XenErr(errno, clear ? "xc_logdirty_control(CLEAN)" : "xc_logdirty_control(PEEK)", domid_);
  const uint64_t* hw = static_cast<const uint64_t*>(h_->bitmap.hbuf);
  out->Resize(frames_);
  uint64_t frame = 0, in_layout = 0;
  uint64_t next_gfn = 0;  // first gfn not yet covered by a range
  std::vector<uint64_t> outside;
  auto note_outside = [&](uint64_t from, uint64_t to) {  // dirty gfns in [from, to)
    for (uint64_t w = from / 64; w < (to + 63) / 64 && w < words; ++w) {
      uint64_t bits = hw[w];
      while (bits) {
        const uint64_t g = w * 64 + __builtin_ctzll(bits);
        bits &= bits - 1;
        if (g >= from && g < to && outside.size() < 64) outside.push_back(g);
      }
    }
  };
  for (const XenGfnRange& r : layout_) {
    note_outside(next_gfn, r.gfn);
    for (uint64_t i = 0; i < r.count; ++i, ++frame) {
      const uint64_t g = r.gfn + i;
      if ((hw[g >> 6] >> (g & 63)) & 1) {
        out->Set(frame);
        ++in_layout;
      }
    }
    next_gfn = r.gfn + r.count;
  }
  note_outside(next_gfn, span);
  if (clear) {
    last_hw_dirty_ = stats.dirty_count;
    last_hw_bits_ = *out;
  }
  for (uint64_t p : untracked_) out->Set(p);
  out->Merge(redirty_);
  if (!outside.empty()) {
    // Xen's own pages (shared info, grant frames) may be marked too: only a
    // gfn that is populated now is a layout change.
    std::vector<xen_pfn_t> arr(outside.begin(), outside.end());
    if (xc_get_pfn_type_batch(h_->xch, domid_, static_cast<unsigned>(arr.size()), arr.data()) == 0) {
      for (size_t i = 0; i < arr.size(); ++i) {
        const uint64_t type = arr[i] & XEN_DOMCTL_PFINFO_LTAB_MASK;
        if (type == XEN_DOMCTL_PFINFO_XTAB || type == XEN_DOMCTL_PFINFO_BROKEN) continue;
        if (clear) redirty_.Merge(*out);
        return Status(Errc::kFailedPrecondition,
                      Name() + ": gfn " + Hex(outside[i]) +
                          " was populated after Open (memory layout changed, e.g. balloon); "
                          "open the domain again and resynchronise");
      }
    }
  }
  if (clear) {
    xen_pfn_t now = 0;
    if (xc_domain_maximum_gpfn(h_->xch, domid_, &now) == 0 && now > max_gpfn_) {
      redirty_.Merge(*out);
      return Status(Errc::kFailedPrecondition,
                    Name() + ": max gpfn grew from " + Hex(max_gpfn_) + " to " + Hex(now) +
                        " (memory layout changed); open the domain again and resynchronise");
    }
    redirty_.ClearAll();
  }
  (void)in_layout;
  return Status::OK();
}

Status XenDomain::FetchAndClearDirty(DirtyBitmap* out) {
  return LogDirtyOp(XEN_DOMCTL_SHADOW_OP_CLEAN, out, true);
}

Status XenDomain::PeekDirty(DirtyBitmap* out) {
  return LogDirtyOp(XEN_DOMCTL_SHADOW_OP_PEEK, out, false);
}

Status XenDomain::Redirty(std::span<const uint64_t> pfns) {
  for (uint64_t p : pfns) {
    if (p >= frames_)
      return Status(Errc::kInvalidArgument,
                    Name() + ": Redirty pfn " + std::to_string(p) + " >= frame count");
  }
  for (uint64_t p : pfns) redirty_.Set(p);
  return Status::OK();
}

Status XenDomain::CooperativeSuspend() {
  const std::string path = "/local/domain/" + std::to_string(domid_) + "/control/shutdown";
  if (!xs_write(h_->xsh, XBT_NULL, path.c_str(), "suspend", 7))
    return XenErr(errno, "xs_write(" + path + ", suspend)", domid_);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.suspend_timeout_ms);
  for (int spin = 0;; ++spin) {
    xc_dominfo_t info{};
    int n = xc_domain_getinfo(h_->xch, domid_, 1, &info);
    if (n < 0) return XenErr(errno, "xc_domain_getinfo (waiting for suspend)", domid_);
    if (n != 1 || info.domid != domid_ || info.dying)
      return Status(Errc::kNotFound, Name() + ": domain vanished while suspending");
    if (info.shutdown) {
      if (info.shutdown_reason == SHUTDOWN_suspend) return Status::OK();
      return Status(Errc::kFailedPrecondition,
                    Name() + ": guest shut down (reason " + std::to_string(info.shutdown_reason) +
                        ") instead of suspending");
    }
    if (std::chrono::steady_clock::now() > deadline) {
      unsigned int len = 0;
      char* v = static_cast<char*>(xs_read(h_->xsh, XBT_NULL, path.c_str(), &len));
      const std::string node = v ? std::string(v, len) : "(unreadable)";
      free(v);
      (void)xs_write(h_->xsh, XBT_NULL, path.c_str(), "", 0);  // withdraw the request
      return Status(Errc::kBusy,
                    Name() + ": guest did not suspend within " +
                        std::to_string(options_.suspend_timeout_ms) + " ms (" + path + " = '" + node +
                        "': " + (node == "suspend" ? "never acknowledged" : "acknowledged") +
                        "; running " + std::to_string(info.running) + ", paused " +
                        std::to_string(info.paused) + ", blocked " + std::to_string(info.blocked) + ")");
    }
    // Poll fast first: a suspend usually completes within a few ms of the
    // guest seeing the watch.
    std::this_thread::sleep_for(std::chrono::microseconds(spin < 200 ? 100 : 1000));
  }
}

Status XenDomain::Suspend() {
  if (options_.suspend == XenSuspend::kCooperative) {
    FTSYNC_RETURN_IF_ERROR(CooperativeSuspend());
    suspended_ = true;
    paused_ = true;
  } else {
    if (xc_domain_pause(h_->xch, domid_) < 0) return XenErr(errno, "xc_domain_pause", domid_);
    paused_ = true;
  }
  if (dm_) {
    // Then the devices: no DMA into guest memory, no device timers, until
    // Resume. As Xen's own save does it: vCPUs first, device model second.
    Status s = dm_->Stop();
    if (!s.ok()) {
      (void)Resume();
      return s.Annotate(Name() + ": stop the device model");
    }
  }
  return Status::OK();
}

Status XenDomain::Resume() {
  // The devices run again before the vCPUs do (a vCPU's first I/O must
  // find them running).
  Status dm_status;
  if (dm_ && dm_->stopped()) dm_status = dm_->Cont().Annotate(Name() + ": continue the device model");
  FTSYNC_RETURN_IF_ERROR(ResumeVcpus());
  return dm_status;
}

Status XenDomain::ResumeVcpus() {
  if (suspended_) {
    // fast=1: the guest's suspend hypercall returns 1 (cancelled), so it
    // resumes in place without reconnecting anything.
    if (xc_domain_resume(h_->xch, domid_, 1) < 0) return XenErr(errno, "xc_domain_resume(fast)", domid_);
    // As libxl does after a cancelled suspend: xenstored clears its own
    // "shut down" mark, so a later real shutdown still fires @releaseDomain.
    if (xs_resume_domain) (void)xs_resume_domain(h_->xsh, domid_);
    suspended_ = false;
    paused_ = false;
    return Status::OK();
  }
  if (xc_domain_unpause(h_->xch, domid_) < 0) return XenErr(errno, "xc_domain_unpause", domid_);
  paused_ = false;
  return Status::OK();
}

Status XenDomain::ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) {
  if (errors.size() != pfns.size())
    return Status(Errc::kInvalidArgument, Name() + ": ReadFrames: errors.size() != pfns.size()");
  std::vector<uint64_t> gfns(pfns.size());
  for (size_t i = 0; i < pfns.size(); ++i) {
    if (pfns[i] >= frames_)
      return Status(Errc::kInvalidArgument,
                    Name() + ": ReadFrames: frame " + std::to_string(pfns[i]) + " >= frame count");
    gfns[i] = gfn_of_[pfns[i]];
  }
  return ReadGfns(gfns, dst, errors);
}

Status XenDomain::ReadGfns(std::span<const uint64_t> gfns, uint8_t* dst, std::span<int> errors) {
  if (errors.size() != gfns.size())
    return Status(Errc::kInvalidArgument, Name() + ": ReadGfns: errors.size() != gfns.size()");
  if (gfns.empty()) return Status::OK();
  constexpr size_t kPage = 4096;
  constexpr size_t kChunk = 1024;  // frames per privcmd batch
  std::vector<xen_pfn_t> arr;
  std::vector<int> err;
  for (size_t base = 0; base < gfns.size(); base += kChunk) {
    const size_t n = std::min(kChunk, gfns.size() - base);
    arr.assign(gfns.begin() + base, gfns.begin() + base + n);
    err.assign(n, 0);
    void* map = xenforeignmemory_map(h_->fmem, domid_, PROT_READ, n, arr.data(), err.data());
    if (map) {
      const uint8_t* src = static_cast<const uint8_t*>(map);
      for (size_t i = 0; i < n; ++i) {
        if (err[i] == 0) {
          std::memcpy(dst + (base + i) * kPage, src + i * kPage, kPage);
          errors[base + i] = 0;
        } else {
          errors[base + i] = err[i] < 0 ? -err[i] : err[i];
        }
      }
      xenforeignmemory_unmap(h_->fmem, map, n);
      continue;
    }
    const int e = errno;
    if (e == ESRCH || e == EPERM || e == EACCES || e == ENOMEM)
      return XenErr(e, "xenforeignmemory_map(" + std::to_string(n) + " frames)", domid_);
    // Some kernels fail a whole batch for one bad frame: fall back to one
    // frame at a time so the good ones are still read.
    for (size_t i = 0; i < n; ++i) {
      xen_pfn_t one = arr[i];
      int e1 = 0;
      void* m1 = xenforeignmemory_map(h_->fmem, domid_, PROT_READ, 1, &one, &e1);
      if (!m1) {
        int ee = errno ? errno : EIO;
        if (ee == ESRCH || ee == EPERM || ee == EACCES)
          return XenErr(ee, "xenforeignmemory_map(1 frame)", domid_);
        errors[base + i] = ee;
        continue;
      }
      if (e1 == 0) {
        std::memcpy(dst + (base + i) * kPage, m1, kPage);
        errors[base + i] = 0;
      } else {
        errors[base + i] = e1 < 0 ? -e1 : e1;
      }
      xenforeignmemory_unmap(h_->fmem, m1, 1);
    }
  }
  return Status::OK();
}

Result<std::vector<uint8_t>> XenDomain::SaveState() {
  xen::XenSavedState st;
  int size = xc_domain_hvm_getcontext(h_->xch, domid_, nullptr, 0);
  if (size <= 0) return XenErr(size < 0 ? errno : EIO, "xc_domain_hvm_getcontext(size)", domid_);
  st.hvm_context.resize(static_cast<size_t>(size));
  int used = xc_domain_hvm_getcontext(h_->xch, domid_, st.hvm_context.data(), static_cast<uint32_t>(size));
  if (used < 0) return XenErr(errno, "xc_domain_hvm_getcontext", domid_);
  st.hvm_context.resize(static_cast<size_t>(used));

  xc_dominfo_t info{};
  int n = xc_domain_getinfo(h_->xch, domid_, 1, &info);
  if (n < 0) return XenErr(errno, "xc_domain_getinfo", domid_);
  if (n != 1 || info.domid != domid_) return Status(Errc::kNotFound, Name() + ": domain vanished");
  st.flags = suspended_ ? xen::XenSavedState::kCooperative : 0;
  st.nr_vcpus = info.max_vcpu_id + 1;
  st.max_pages = info.max_memkb / 4;
  st.tot_pages = info.nr_pages;
  if (xc_domain_get_tsc_info(h_->xch, domid_, &st.tsc_mode, &st.tsc_nsec, &st.tsc_khz,
                             &st.tsc_incarnation) < 0)
    return XenErr(errno, "xc_domain_get_tsc_info", domid_);
  const int ver = xc_version(h_->xch, XENVER_version, nullptr);
  if (ver > 0) {
    st.xen_major = static_cast<uint16_t>(ver >> 16);
    st.xen_minor = static_cast<uint16_t>(ver & 0xffff);
  }
  // The parameters Xen's own save sends (tools/libs/guest save, 4.17),
  // nonzero ones only; the event channel ports are the restore side's own.
  static const uint32_t kParams[] = {
      HVM_PARAM_STORE_PFN,        HVM_PARAM_IOREQ_PFN,
      HVM_PARAM_BUFIOREQ_PFN,     HVM_PARAM_PAGING_RING_PFN,
      HVM_PARAM_MONITOR_RING_PFN, HVM_PARAM_SHARING_RING_PFN,
      HVM_PARAM_VM86_TSS_SIZED,   HVM_PARAM_CONSOLE_PFN,
      HVM_PARAM_ACPI_IOPORTS_LOCATION, HVM_PARAM_VIRIDIAN,
      HVM_PARAM_IDENT_PT,         HVM_PARAM_VM_GENERATION_ID_ADDR,
      HVM_PARAM_IOREQ_SERVER_PFN, HVM_PARAM_NR_IOREQ_SERVER_PAGES,
      HVM_PARAM_X87_FIP_WIDTH,    HVM_PARAM_MCA_CAP,
  };
  for (uint32_t idx : kParams) {
    uint64_t v = 0;
    if (xc_hvm_param_get(h_->xch, domid_, idx, &v) < 0)
      return XenErr(errno, "xc_hvm_param_get(" + std::to_string(idx) + ")", domid_);
    if (v) st.params.push_back({idx, v});
  }
  if (xc_cpu_policy_init && xc_cpu_policy_get_domain && xc_cpu_policy_serialise) {
    xc_cpu_policy_t* pol = xc_cpu_policy_init();
    if (pol && xc_cpu_policy_get_domain(h_->xch, domid_, pol) == 0) {
      uint32_t nl = 512, nm = 64;
      std::vector<xen_cpuid_leaf_t> leaves(nl);
      std::vector<xen_msr_entry_t> msrs(nm);
      if (xc_cpu_policy_serialise(h_->xch, pol, leaves.data(), &nl, msrs.data(), &nm) == 0) {
        const uint8_t* lp = reinterpret_cast<const uint8_t*>(leaves.data());
        const uint8_t* mp = reinterpret_cast<const uint8_t*>(msrs.data());
        st.cpuid_policy.assign(lp, lp + nl * sizeof(xen_cpuid_leaf_t));
        st.msr_policy.assign(mp, mp + nm * sizeof(xen_msr_entry_t));
      }
    }
    if (pol) xc_cpu_policy_destroy(pol);
  }
  for (const XenGfnRange& r : layout_) st.layout.push_back({r.gfn, r.count});
  if (dm_) {
    Result<std::vector<uint8_t>> dms = dm_->SaveDevicesState();
    if (!dms.ok()) return dms.status().Annotate(Name() + ": save the device model's state");
    st.dm_state = std::move(dms).value();
    FTSYNC_RETURN_IF_ERROR(ReadDeviceModelKeys(&st.dm_xenstore));
  }
  return xen::EncodeXenState(st);
}

// The device model's physmap keys (where QEMU placed its own memory, e.g.
// video RAM), as Xen's save carries them: "physmap/ID/KEY\0VALUE\0".
Status XenDomain::ReadDeviceModelKeys(std::vector<uint8_t>* out) {
  out->clear();
  if (!h_->xsh || !xs_directory) return Status::OK();
  const std::string root = "/local/domain/0/device-model/" + std::to_string(domid_) + "/";
  unsigned int n = 0;
  char** ids = xs_directory(h_->xsh, XBT_NULL, (root + "physmap").c_str(), &n);
  if (!ids) return Status::OK();  // no physmap: nothing to carry
  Status s;
  for (unsigned int i = 0; i < n && s.ok(); ++i) {
    for (const char* key : {"start_addr", "size", "name"}) {
      const std::string rel = std::string("physmap/") + ids[i] + "/" + key;
      unsigned int len = 0;
      char* v = static_cast<char*>(xs_read(h_->xsh, XBT_NULL, (root + rel).c_str(), &len));
      if (!v) {
        s = XenErr(errno, "xs_read(" + root + rel + ")", domid_);
        break;
      }
      out->insert(out->end(), rel.begin(), rel.end());
      out->push_back(0);
      out->insert(out->end(), v, v + len);
      out->push_back(0);
      free(v);
    }
  }
  free(ids);
  return s;
}

Status XenDomain::RestoreState(std::span<const uint8_t> state) {
  if (state.empty()) return Status(Errc::kInvalidArgument, Name() + ": RestoreState: empty blob");
  auto st = xen::DecodeXenState(state);
  if (!st.ok()) return st.status().Annotate(Name() + ": RestoreState");
  std::vector<uint8_t>& ctx = st->hvm_context;  // setcontext takes a non-const buffer
  if (xc_domain_hvm_setcontext(h_->xch, domid_, ctx.data(), static_cast<uint32_t>(ctx.size())) < 0)
    return XenErr(errno, "xc_domain_hvm_setcontext", domid_);
  return Status::OK();
}

}  // namespace ftsync
