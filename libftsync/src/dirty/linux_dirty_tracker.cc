// ftsync: PagemapDirtyTracker, the PAGEMAP_SCAN side of the Linux dirty
// tracker.
#include "ftsync/linux_dirty_tracker.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <string>

#include "dirty/linux_sys.h"
#include "dirty/uffd_uapi.h"

namespace ftsync {

using dirty_internal::CheckPageRange;
using dirty_internal::Hex;
using dirty_internal::SystemPageSize;

namespace {

// Scan output capacity (24 bytes each). A range with more separate runs of
// written pages takes several ioctls, each resuming at walk_end.
constexpr uint64_t kMaxRegions = 4096;

// Sets bits [first, first+count) of *out.
void SetRun(DirtyBitmap* out, uint64_t first, uint64_t count) {
  uint64_t* w = out->words();
  uint64_t i = first;
  const uint64_t end = first + count;
  while (i < end && (i & 63) != 0) out->Set(i++);
  for (; i + 64 <= end; i += 64) w[i >> 6] = ~uint64_t{0};
  while (i < end) out->Set(i++);
}

}  // namespace

PagemapDirtyTracker::PagemapDirtyTracker(pid_t pid, int fd, uint64_t addr,
                                         size_t page_size, uint64_t page_count)
    : pid_(pid),
      fd_(fd),
      addr_(addr),
      page_size_(page_size),
      page_count_(page_count),
      // n pages hold at most (n + 1) / 2 separate runs.
      regions_(std::min(kMaxRegions, (page_count + 1) / 2)) {
  static_assert(sizeof(Region) == sizeof(struct page_region));
  static_assert(offsetof(Region, end) == offsetof(struct page_region, end));
  static_assert(offsetof(Region, categories) ==
                offsetof(struct page_region, categories));
}

PagemapDirtyTracker::~PagemapDirtyTracker() { close(fd_); }

Result<std::unique_ptr<PagemapDirtyTracker>> PagemapDirtyTracker::Open(
    pid_t pid, uint64_t addr, size_t len) {
  const size_t page = SystemPageSize();
  FTSYNC_RETURN_IF_ERROR(CheckPageRange(addr, len, page, "pagemap"));
  if (pid < 0) {
    return Status(Errc::kInvalidArgument,
                  "pagemap: negative pid " + std::to_string(pid));
  }
  const std::string path =
      pid == 0 ? "/proc/self/pagemap"
               : "/proc/" + std::to_string(pid) + "/pagemap";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) {
      return Status(Errc::kNotFound, "open " + path + ": no process " +
                                         std::to_string(pid));
    }
    return Status::FromErrno(err, "open " + path);
  }
  return std::unique_ptr<PagemapDirtyTracker>(
      new PagemapDirtyTracker(pid, fd, addr, page, len / page));
}

Status PagemapDirtyTracker::FetchAndClear(DirtyBitmap* out) {
  if (out == nullptr) {
    return Status(Errc::kInvalidArgument, "FetchAndClear: null bitmap");
  }
  out->Resize(page_count_);
  FTSYNC_RETURN_IF_ERROR(Scan(0, page_count_, /*clear=*/true, out));
  return CheckAlive();
}

Status PagemapDirtyTracker::Peek(DirtyBitmap* out) {
  if (out == nullptr) {
    return Status(Errc::kInvalidArgument, "Peek: null bitmap");
  }
  out->Resize(page_count_);
  FTSYNC_RETURN_IF_ERROR(Scan(0, page_count_, /*clear=*/false, out));
  return CheckAlive();
}

Status PagemapDirtyTracker::Rearm(std::span<const uint64_t> pages) {
  for (uint64_t p : pages) {
    if (p >= page_count_) {
      return Status(Errc::kInvalidArgument,
                    "Rearm: page " + std::to_string(p) + " >= page count " +
                        std::to_string(page_count_));
    }
  }
  size_t i = 0;
  while (i < pages.size()) {
    size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
    FTSYNC_RETURN_IF_ERROR(
        Scan(pages[i], j - i, /*clear=*/true, /*out=*/nullptr));
    i = j;
  }
  return CheckAlive();
}

Status PagemapDirtyTracker::CheckAlive() const {
  if (pid_ == 0) return Status::OK();
  // After the target exits, a scan walks an empty address space and
  // reports nothing, while a pagemap read returns end-of-file. Checking
  // after the scan means the scan saw the live address space.
  uint64_t entry;
  ssize_t n = pread(fd_, &entry, sizeof(entry),
                    static_cast<off_t>(addr_ / page_size_ * sizeof(entry)));
  if (n == static_cast<ssize_t>(sizeof(entry))) return Status::OK();
  if (n == 0) return ScanError(ESRCH, addr_, addr_);
  return Status::FromErrno(n < 0 ? errno : EIO,
                           "read /proc/" + std::to_string(pid_) + "/pagemap");
}

Status PagemapDirtyTracker::Scan(uint64_t first, uint64_t count, bool clear,
                                 DirtyBitmap* out) {
  uint64_t start = addr_ + first * page_size_;
  const uint64_t end = start + count * page_size_;
  while (start < end) {
    struct pm_scan_arg arg = {};
    arg.size = sizeof(arg);
    // CHECK_WPASYNC makes an unregistered VMA an error (EPERM) instead of
    // a silently clean range.
    arg.flags = PM_SCAN_CHECK_WPASYNC | (clear ? PM_SCAN_WP_MATCHING : 0);
    arg.start = start;
    arg.end = end;
    if (out != nullptr) {
      arg.vec = reinterpret_cast<uintptr_t>(regions_.data());
      arg.vec_len = regions_.size();
    }
    arg.category_mask = PAGE_IS_WRITTEN;
    arg.return_mask = PAGE_IS_WRITTEN;
    int n = ioctl(fd_, PAGEMAP_SCAN, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ScanError(errno, start, end);
    }
    for (int i = 0; i < n; ++i) {
      const Region& r = regions_[i];
      if (r.start < start || r.end > end || r.start >= r.end) {
        return Status(Errc::kInternal,
                      "PAGEMAP_SCAN: region " + Hex(r.start) + "-" +
                          Hex(r.end) + " outside " + Hex(start) + "-" +
                          Hex(end));
      }
      SetRun(out, (r.start - addr_) / page_size_,
             (r.end - r.start) / page_size_);
    }
    // With a full output vector the walk stops early, and pages past
    // walk_end were neither reported nor write-protected: resume there.
    if (arg.walk_end <= start || arg.walk_end > end) {
      return Status(Errc::kInternal,
                    "PAGEMAP_SCAN: walk_end " + Hex(arg.walk_end) +
                        " outside (" + Hex(start) + ", " + Hex(end) + "]");
    }
    start = arg.walk_end;
  }
  return Status::OK();
}

Status PagemapDirtyTracker::ScanError(int err, uint64_t start,
                                      uint64_t end) const {
  const std::string who =
      "pid " + std::to_string(pid_ == 0 ? getpid() : pid_);
  const std::string range =
      "range " + Hex(addr_) + "-" + Hex(addr_ + page_count_ * page_size_);
  if (err == EPERM) {
    return Status(Errc::kFailedPrecondition,
                  range + " of " + who +
                      " is not registered with userfaultfd write-protect "
                      "(PAGEMAP_SCAN found an unregistered mapping in " +
                      Hex(start) + "-" + Hex(end) +
                      "); register it with UffdWpRegistration inside that "
                      "process");
  }
  if (err == ESRCH) {
    return Status(Errc::kNotFound, "PAGEMAP_SCAN: " + who + " has exited");
  }
  return Status::FromErrno(err, "PAGEMAP_SCAN of " + range + " of " + who);
}

}  // namespace ftsync
