// ftsync: XenDomain, the Domain seam over Xen 4.17's libxc (see xen.h).
//
// Why pause/unpause is a consistent checkpoint here (and not the guest's
// cooperative suspend that libxl's Remus uses):
//  - xc_domain_pause deschedules every vCPU synchronously: when it returns
//    no vCPU runs, so guest memory and the HVM context stop changing.
//  - A PVH guest has no device model (no QEMU writing guest RAM); the only
//    other writers are dom0 PV backends (netback/blkback grant copies), and
//    Xen marks those writes in the log-dirty bitmap too, so the log stays
//    exact while paused: two CLEANs in a row while paused return 0 pages
//    (measured, LAB.md).
//  - The guest-cooperative suspend (xl/libxl Remus: the guest's kernel
//    quiesces its frontends and parks its vCPUs) exists so a checkpoint
//    can be resumed on another host with freshly reconnected PV devices,
//    and costs 130-350 ms here nested; pause costs < 1 ms. The price: at
//    failover the replica's PV rings may hold in-flight requests, and the
//    restore side must reconnect/replay devices (not done yet: the probe
//    guest has none). CPU state comes from xc_domain_hvm_getcontext, which
//    Xen produces for any paused HVM/PVH domain without guest help.
#include "ftsync/xen.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstring>
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
  // Hypercall-safe buffer for the log-dirty bitmap (allocated on first use).
  xc_hypercall_buffer_t bitmap{};
  int bitmap_pages = 0;

  ~Handles() {
    if (xch && bitmap.hbuf) xc__hypercall_buffer_free_pages(xch, &bitmap, bitmap_pages);
    if (fmem) xenforeignmemory_close(fmem);
    if (xch) xc_interface_close(xch);
  }
};

XenDomain::XenDomain(uint32_t domid, std::unique_ptr<Handles> h, uint64_t frames,
                     uint64_t max_gpfn, uint64_t nr_pages)
    : domid_(domid), h_(std::move(h)), frames_(frames), max_gpfn_(max_gpfn),
      nr_pages_(nr_pages), redirty_(frames) {}


XenDomain::~XenDomain() {
  if (paused_) (void)Resume();
  if (logdirty_on_) (void)DisableDirtyLog();
}

Result<std::unique_ptr<XenDomain>> XenDomain::Open(uint32_t domid, XenDomainOptions options) {
  if (domid == 0) return Status(Errc::kInvalidArgument, "xen: domain 0 cannot be protected");
  if (!xc_interface_open || !xenforeignmemory_open || !xc_logdirty_control ||
      !xenforeignmemory_map || !xc_domain_hvm_getcontext)
    return Status(Errc::kNotSupported,
                  "xen: this program was linked without libxenctrl/libxenforeignmemory "
                  "(-lxenctrl -lxenforeignmemory)");
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

  xen_pfn_t max_gpfn = 0;
  if (xc_domain_maximum_gpfn(h->xch, domid, &max_gpfn) < 0)
    return XenErr(errno, "xc_domain_maximum_gpfn", domid);
  uint64_t frames = uint64_t{max_gpfn} + 1;
  if (options.max_frames && frames > options.max_frames) frames = options.max_frames;
  std::unique_ptr<XenDomain> d(new XenDomain(domid, std::move(h), frames, max_gpfn, info.nr_pages));
  d->calibrate_rounds_ = options.calibrate_rounds;
  return d;
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
    // are allowed). Not OFF+ENABLE: re-enabling on a running guest killed
    // it (triple fault) in 2 of 5 nested runs.
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
  if (calibrate_rounds_ > 0) return CalibrateUntrackedWrites(calibrate_rounds_);
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

Status XenDomain::CalibrateUntrackedWrites(int rounds) {
  if (!logdirty_on_)
    return Status(Errc::kFailedPrecondition, Name() + ": CalibrateUntrackedWrites without dirty log");
  std::vector<uint64_t> before, after;
  DirtyBitmap bm;
  for (int r = 0; r < rounds; ++r) {
    FTSYNC_RETURN_IF_ERROR(Suspend());
    Status st = FetchAndClearDirty(&bm);
    if (st.ok()) redirty_.Merge(bm);  // keep every harvested bit
    if (st.ok()) st = HashAll(&before);
    Status rs = Resume();
    FTSYNC_RETURN_IF_ERROR(st);
    FTSYNC_RETURN_IF_ERROR(rs);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    FTSYNC_RETURN_IF_ERROR(Suspend());
    // bm also holds untracked_ and redirty_; the test below uses only what
    // the hypervisor's CLEAN reported (last_hw_bits_).
    st = FetchAndClearDirty(&bm);
    if (st.ok()) redirty_.Merge(bm);
    if (st.ok()) st = HashAll(&after);
    rs = Resume();
    FTSYNC_RETURN_IF_ERROR(st);
    FTSYNC_RETURN_IF_ERROR(rs);
    for (uint64_t p = 0; p < frames_; ++p) {
      if (before[p] != after[p] && !last_hw_bits_.Test(p) &&
          std::find(untracked_.begin(), untracked_.end(), p) == untracked_.end())
        untracked_.push_back(p);
    }
  }
  return Status::OK();
}

Status XenDomain::DisableDirtyLog() {
  int rc = xc_shadow_control(h_->xch, domid_, XEN_DOMCTL_SHADOW_OP_OFF, nullptr, 0);
  logdirty_on_ = false;
  if (rc < 0 && errno != ESRCH)  // the domain being gone leaves nothing to stop
    return XenErr(errno, "xc_shadow_control(OFF)", domid_);
  return Status::OK();
}

Status XenDomain::EnsureBitmap() {
  const size_t bytes = (frames_ + 63) / 64 * 8;
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

Status XenDomain::FetchAndClearDirty(DirtyBitmap* out) {
  if (!logdirty_on_)
    return Status(Errc::kFailedPrecondition, Name() + ": FetchAndClearDirty without dirty log");
  static_assert(sizeof(unsigned long) == sizeof(uint64_t), "Xen bitmap words are unsigned long");
  const uint64_t words = (frames_ + 63) / 64;
  const size_t bytes = words * 8;
  FTSYNC_RETURN_IF_ERROR(EnsureBitmap());
  std::memset(h_->bitmap.hbuf, 0, bytes);
  xc_shadow_op_stats_t stats{};
  long long rc = xc_logdirty_control(h_->xch, domid_, XEN_DOMCTL_SHADOW_OP_CLEAN, &h_->bitmap,
                                     frames_, 0, &stats);
  if (rc < 0) return XenErr(errno, "xc_logdirty_control(CLEAN)", domid_);
  last_hw_dirty_ = stats.dirty_count;
  // From here on the log is cleared: nothing may fail.
  out->Resize(frames_);
  std::memcpy(out->words(), h_->bitmap.hbuf, bytes);
  if (frames_ % 64) out->words()[words - 1] &= (uint64_t{1} << (frames_ % 64)) - 1;
  last_hw_bits_ = *out;
  for (uint64_t p : untracked_) out->Set(p);
  out->Merge(redirty_);
  redirty_.ClearAll();
  return Status::OK();
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

Status XenDomain::Suspend() {
  if (xc_domain_pause(h_->xch, domid_) < 0) return XenErr(errno, "xc_domain_pause", domid_);
  paused_ = true;
  return Status::OK();
}

Status XenDomain::Resume() {
  if (xc_domain_unpause(h_->xch, domid_) < 0) return XenErr(errno, "xc_domain_unpause", domid_);
  paused_ = false;
  return Status::OK();
}

Status XenDomain::ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) {
  if (errors.size() != pfns.size())
    return Status(Errc::kInvalidArgument, Name() + ": ReadFrames: errors.size() != pfns.size()");
  if (pfns.empty()) return Status::OK();
  constexpr size_t kPage = 4096;
  constexpr size_t kChunk = 1024;  // frames per privcmd batch
  std::vector<xen_pfn_t> arr;
  std::vector<int> err;
  for (size_t base = 0; base < pfns.size(); base += kChunk) {
    const size_t n = std::min(kChunk, pfns.size() - base);
    arr.assign(pfns.begin() + base, pfns.begin() + base + n);
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
  int size = xc_domain_hvm_getcontext(h_->xch, domid_, nullptr, 0);
  if (size <= 0) return XenErr(size < 0 ? errno : EIO, "xc_domain_hvm_getcontext(size)", domid_);
  std::vector<uint8_t> blob(static_cast<size_t>(size));
  int used = xc_domain_hvm_getcontext(h_->xch, domid_, blob.data(), static_cast<uint32_t>(size));
  if (used < 0) return XenErr(errno, "xc_domain_hvm_getcontext", domid_);
  blob.resize(static_cast<size_t>(used));
  return blob;
}

Status XenDomain::RestoreState(std::span<const uint8_t> state) {
  if (state.empty()) return Status(Errc::kInvalidArgument, Name() + ": RestoreState: empty blob");
  std::vector<uint8_t> copy(state.begin(), state.end());  // setcontext takes a non-const buffer
  if (xc_domain_hvm_setcontext(h_->xch, domid_, copy.data(), static_cast<uint32_t>(copy.size())) < 0)
    return XenErr(errno, "xc_domain_hvm_setcontext", domid_);
  return Status::OK();
}

}  // namespace ftsync
