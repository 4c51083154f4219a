// ftsync: small Linux helpers of the dirty tracker.
#include "dirty/linux_sys.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "dirty/uffd_uapi.h"

namespace ftsync {
namespace dirty_internal {

size_t SystemPageSize() {
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? static_cast<size_t>(page) : 4096;
}

std::string KernelRelease() {
  struct utsname u;
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

Status CheckPageRange(uint64_t addr, uint64_t len, size_t page,
                      const char* what) {
  std::string range = std::string(what) + " range " + Hex(addr) + "+" +
                      Hex(len) + ": ";
  if (addr == 0) return Status(Errc::kInvalidArgument, range + "null address");
  if (len == 0) return Status(Errc::kInvalidArgument, range + "zero length");
  if (addr % page != 0 || len % page != 0) {
    return Status(Errc::kInvalidArgument,
                  range + "not aligned to the page size " + Hex(page));
  }
  if (addr + len < addr) {
    return Status(Errc::kInvalidArgument, range + "wraps around");
  }
  return Status::OK();
}

int OpenUserfaultfd() {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  long fd = syscall(SYS_userfaultfd, flags);
  if (fd < 0 && errno == EPERM) {
    fd = syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
  }
  return fd < 0 ? -errno : static_cast<int>(fd);
}

void CloseKeepErrno(int fd) {
  int saved = errno;
  close(fd);
  errno = saved;
}

}  // namespace dirty_internal
}  // namespace ftsync
