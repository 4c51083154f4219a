// ftsync: checks made before starting QEMU (internal).
#ifndef FTSYNC_SRC_QEMU_QEMU_LAUNCH_H_
#define FTSYNC_SRC_QEMU_QEMU_LAUNCH_H_

#include <string>

#include "ftsync/qemu.h"
#include "ftsync/status.h"

namespace ftsync::internal {

// Checks paths and sizes of `launch` (see QemuProcess::Launch for the
// errors): binary executable, preload present when tracking, RAM size a
// page multiple, RAM and socket paths given.
Status CheckLaunch(const QemuLaunch& launch);

// Creates the RAM file with ram_bytes bytes if missing (an existing one
// must have exactly that size) and checks that its filesystem supports a
// writable shared mapping and, with dirty_tracking, userfaultfd
// write-protect on it. Returns the file's canonical path.
Result<std::string> PrepareRamFile(const QemuLaunch& launch);

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_QEMU_QEMU_LAUNCH_H_
