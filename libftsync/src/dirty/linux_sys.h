// ftsync: small Linux helpers shared by the userfaultfd / pagemap dirty
// tracker (internal).
#ifndef FTSYNC_DIRTY_LINUX_SYS_H_
#define FTSYNC_DIRTY_LINUX_SYS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "ftsync/status.h"

namespace ftsync {
namespace dirty_internal {

// sysconf(_SC_PAGESIZE).
size_t SystemPageSize();

// uname's release ("6.1.0-18-amd64"), or "unknown".
std::string KernelRelease();

// "0x7f3a00000000".
std::string Hex(uint64_t v);

// OK when addr and len are multiples of page, len > 0, addr != 0 and
// addr + len does not wrap; otherwise kInvalidArgument naming `what`.
Status CheckPageRange(uint64_t addr, uint64_t len, size_t page,
                      const char* what);

// A new userfaultfd (close-on-exec, non-blocking), or -errno. Falls back to
// user-mode-only faults when the full mode is refused (EPERM), which is
// enough for async write-protect: the kernel resolves those faults itself.
int OpenUserfaultfd();

// Closes fd, preserving errno.
void CloseKeepErrno(int fd);

}  // namespace dirty_internal
}  // namespace ftsync

#endif  // FTSYNC_DIRTY_LINUX_SYS_H_
