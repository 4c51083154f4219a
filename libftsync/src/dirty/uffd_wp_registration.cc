// ftsync: ProbeUffdWpAsync and UffdWpRegistration.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "dirty/linux_sys.h"
#include "dirty/uffd_uapi.h"
#include "ftsync/linux_dirty_tracker.h"

namespace ftsync {

using dirty_internal::CheckPageRange;
using dirty_internal::CloseKeepErrno;
using dirty_internal::Hex;
using dirty_internal::KernelRelease;
using dirty_internal::OpenUserfaultfd;
using dirty_internal::SystemPageSize;

namespace {

constexpr uint64_t kWpFeatures =
    UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;

Status NeedsNewerKernel(const std::string& what) {
  return Status(Errc::kNotSupported,
                what + " (needs Linux 6.7 or later; running " +
                    KernelRelease() + ")");
}

Status UserfaultfdError(int err) {
  if (err == ENOSYS) {
    return NeedsNewerKernel("the userfaultfd system call is missing");
  }
  return Status::FromErrno(err, "userfaultfd()");
}

// Names the first missing write-protect feature of a UFFDIO_API answer.
Status CheckFeatures(uint64_t features) {
  if (!(features & UFFD_FEATURE_WP_ASYNC)) {
    return NeedsNewerKernel("userfaultfd lacks UFFD_FEATURE_WP_ASYNC");
  }
  if (!(features & UFFD_FEATURE_WP_UNPOPULATED)) {
    return NeedsNewerKernel("userfaultfd lacks UFFD_FEATURE_WP_UNPOPULATED");
  }
  return Status::OK();
}

Status ProbePagemapScan() {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open /proc/self/pagemap");
  // An empty range: validates the argument and walks nothing.
  struct pm_scan_arg arg = {};
  arg.size = sizeof(arg);
  arg.category_mask = PAGE_IS_WRITTEN;
  arg.return_mask = PAGE_IS_WRITTEN;
  int rc = ioctl(fd, PAGEMAP_SCAN, &arg);
  int err = errno;
  close(fd);
  if (rc >= 0) return Status::OK();
  if (err == ENOTTY) {
    return NeedsNewerKernel("/proc/<pid>/pagemap lacks the PAGEMAP_SCAN ioctl");
  }
  return Status::FromErrno(err, "PAGEMAP_SCAN probe");
}

}  // namespace

Status ProbeUffdWpAsync() {
  int fd = OpenUserfaultfd();
  if (fd < 0) return UserfaultfdError(-fd);
  // Asking for no feature makes the kernel answer with all it supports.
  struct uffdio_api api = {};
  api.api = UFFD_API;
  int rc = ioctl(fd, UFFDIO_API, &api);
  int err = errno;
  close(fd);
  if (rc != 0) return Status::FromErrno(err, "UFFDIO_API");
  FTSYNC_RETURN_IF_ERROR(CheckFeatures(api.features));
  return ProbePagemapScan();
}

Result<std::unique_ptr<UffdWpRegistration>> UffdWpRegistration::Register(
    void* addr, size_t len) {
  const uint64_t start = reinterpret_cast<uintptr_t>(addr);
  FTSYNC_RETURN_IF_ERROR(
      CheckPageRange(start, len, SystemPageSize(), "userfaultfd"));
  const std::string range = "range " + Hex(start) + "-" + Hex(start + len);

  // UFFDIO_REGISTER skips holes silently; a mapping created in one later
  // would be untracked. msync(MS_ASYNC) only checks that all is mapped.
  if (msync(addr, len, MS_ASYNC) != 0) {
    if (errno == ENOMEM) {
      return Status(Errc::kInvalidArgument,
                    "userfaultfd: " + range + " is not entirely mapped");
    }
    return Status::FromErrno(errno, "msync: " + range);
  }

  int fd = OpenUserfaultfd();
  if (fd < 0) return UserfaultfdError(-fd);

  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = kWpFeatures;
  if (ioctl(fd, UFFDIO_API, &api) != 0) {
    int err = errno;
    close(fd);
    // EINVAL: a requested feature is unknown to this kernel.
    if (err == EINVAL) {
      return NeedsNewerKernel(
          "userfaultfd lacks UFFD_FEATURE_WP_ASYNC / WP_UNPOPULATED");
    }
    return Status::FromErrno(err, "UFFDIO_API");
  }

  struct uffdio_register reg = {};
  reg.range.start = start;
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(fd, UFFDIO_REGISTER, &reg) != 0) {
    int err = errno;
    close(fd);
    switch (err) {
      case ENOMEM:
        return Status(Errc::kInvalidArgument,
                      "UFFDIO_REGISTER: " + range + " is not entirely mapped");
      case EBUSY:
        return Status(Errc::kFailedPrecondition,
                      "UFFDIO_REGISTER: " + range +
                          " is already registered with another userfaultfd");
      case EINVAL:
        return Status::FromErrno(
            err, "UFFDIO_REGISTER: " + range +
                     ": this mapping cannot be write-protect tracked");
      default:
        return Status::FromErrno(err, "UFFDIO_REGISTER: " + range);
    }
  }
  if (!(reg.ioctls & (uint64_t{1} << _UFFDIO_WRITEPROTECT))) {
    close(fd);  // closing unregisters
    return Status(Errc::kNotSupported,
                  "UFFDIO_REGISTER: " + range +
                      ": write-protect is not available on this mapping");
  }

  struct uffdio_writeprotect wp = {};
  wp.range.start = start;
  wp.range.len = len;
  wp.mode = UFFDIO_WRITEPROTECT_MODE_WP;
  int rc;
  // EAGAIN only while the mapping is being changed under us: retry.
  for (int tries = 0; tries < 100; ++tries) {
    rc = ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
    if (rc == 0 || (errno != EAGAIN && errno != EINTR)) break;
  }
  if (rc != 0) {
    int err = errno;
    CloseKeepErrno(fd);
    return Status::FromErrno(err, "UFFDIO_WRITEPROTECT: " + range);
  }
  return std::unique_ptr<UffdWpRegistration>(
      new UffdWpRegistration(addr, len, fd));
}

UffdWpRegistration::~UffdWpRegistration() {
  // Closing the last reference to the userfaultfd unregisters exactly the
  // VMAs registered through it. An explicit UFFDIO_UNREGISTER would not be
  // safer: after an munmap the address range may belong to a mapping that
  // another userfaultfd of this process registered, and unregistering acts
  // on whatever is mapped there now.
  close(fd_);
}

}  // namespace ftsync
