// ftsync: QEMU's command line and the checks made before starting it.
#include "qemu/qemu_launch.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "ftsync/linux_dirty_tracker.h"
#include "qemu/qemu_sys.h"

namespace ftsync {

namespace {

// QEMU's option syntax: a comma inside a value is written twice.
std::string EscapeCommas(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::string FsType(int fd) {
  struct statfs sf;
  if (fstatfs(fd, &sf) != 0) return "unknown";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, static_cast<uint64_t>(sf.f_type));
  switch (static_cast<uint64_t>(sf.f_type)) {
    case 0x01021994:
      return "tmpfs";
    case 0xEF53:
      return "ext2/3/4";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x958458f6:
      return "hugetlbfs";
    case 0x65735546:
      return "fuse";
    case 0x6969:
      return "nfs";
    case 0x9fa0:
      return "proc";
    case 0x62656572:
      return "sysfs";
    default:
      return buf;
  }
}

}  // namespace

std::vector<std::string> BuildQemuArgv(const QemuLaunch& l) {
  const std::string size = std::to_string(l.ram_bytes);
  std::vector<std::string> argv = {
      l.qemu_binary,
      "-machine",
      l.machine + ",memory-backend=ram0",
      "-object",
      "memory-backend-file,id=ram0,size=" + size + ",mem-path=" + EscapeCommas(l.ram_path) +
          ",share=on",
      "-qmp",
      "unix:" + EscapeCommas(l.qmp_socket) + ",server=on,wait=off",
      "-display",
      "none",
      "-vga",
      "none",
      "-nodefaults",
      "-no-user-config",
  };
  if (l.incoming) {
    argv.insert(argv.end(), {"-S", "-incoming", "defer"});
  }
  argv.insert(argv.end(), l.extra_args.begin(), l.extra_args.end());
  return argv;
}

namespace internal {

Status CheckLaunch(const QemuLaunch& l) {
  if (l.qemu_binary.empty()) return Status(Errc::kInvalidArgument, "no QEMU binary given");
  if (l.machine.empty() || l.machine.find(',') != std::string::npos) {
    return Status(Errc::kInvalidArgument,
                  "machine type '" + l.machine + "' is empty or has options");
  }
  if (access(l.qemu_binary.c_str(), X_OK) != 0) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return Status(Errc::kNotFound, "QEMU binary " + l.qemu_binary +
                                         " not found (install Debian's qemu-system-x86)");
    }
    return Status::FromErrno(err, "QEMU binary " + l.qemu_binary + " is not executable");
  }
  if (l.dirty_tracking) {
    if (l.preload_library.empty()) {
      return Status(Errc::kInvalidArgument,
                    "dirty tracking needs the preload library (libftsync_qemu_preload.so); "
                    "none given");
    }
    if (access(l.preload_library.c_str(), R_OK) != 0) {
      int err = errno;
      if (err == ENOENT || err == ENOTDIR) {
        return Status(Errc::kNotFound,
                      "preload library " + l.preload_library +
                          " not found (the project builds it: libftsync_qemu_preload.so); "
                          "QEMU's guest RAM cannot be tracked without it");
      }
      return Status::FromErrno(err, "preload library " + l.preload_library);
    }
  }
  for (const std::string& a : l.extra_args) {
    if (a == "-daemonize" || a == "--daemonize") {
      return Status(Errc::kInvalidArgument,
                    "-daemonize: the forked QEMU would lose the guest RAM's dirty-log "
                    "registration (and its pid would not be the one started)");
    }
    if (a.find("virtio-balloon") != std::string::npos ||
        a.find("virtio-mem") != std::string::npos) {
      return Status(Errc::kInvalidArgument,
                    "'" + a +
                        "': balloon and virtio-mem devices discard guest RAM without "
                        "writing it, which the dirty log cannot see");
    }
  }
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (l.ram_bytes == 0 || l.ram_bytes % page != 0) {
    return Status(Errc::kInvalidArgument, "guest RAM size " + std::to_string(l.ram_bytes) +
                                              " is not a positive multiple of " +
                                              std::to_string(page));
  }
  if (l.ram_path.empty()) return Status(Errc::kInvalidArgument, "no guest RAM file given");
  struct sockaddr_un sun;
  if (l.qmp_socket.empty() || l.qmp_socket.size() >= sizeof(sun.sun_path)) {
    return Status(Errc::kInvalidArgument, "QMP socket path '" + l.qmp_socket +
                                              "' is empty or longer than " +
                                              std::to_string(sizeof(sun.sun_path) - 1) + " bytes");
  }
  return Status::OK();
}

Result<std::string> PrepareRamFile(const QemuLaunch& l) {
  const std::string& path = l.ram_path;
  UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    int err = errno;
    if (err == ENOENT) {
      return Status(Errc::kNotFound, "guest RAM file " + path + ": its directory does not exist");
    }
    if (err == EISDIR) {
      return Status(Errc::kInvalidArgument,
                    "guest RAM file " + path + " is a directory; name a file");
    }
    return Status::FromErrno(err, "guest RAM file " + path);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "fstat " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status(Errc::kInvalidArgument, "guest RAM file " + path + " is not a regular file");
  }
  if (st.st_size == 0) {
    if (ftruncate(fd.get(), static_cast<off_t>(l.ram_bytes)) != 0) {
      return Status::FromErrno(errno,
                               "size guest RAM file " + path + " (" + FsType(fd.get()) + ")");
    }
  } else if (static_cast<uint64_t>(st.st_size) != l.ram_bytes) {
    return Status(Errc::kInvalidArgument, "guest RAM file " + path + " has " +
                                              std::to_string(st.st_size) + " bytes, the guest " +
                                              std::to_string(l.ram_bytes));
  }
  // The filesystem must allow what QEMU (share=on) and the preload will do:
  // a writable shared mapping, write-protect tracked.
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* probe = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (probe == MAP_FAILED) {
    int err = errno;
    return Status(Errc::kNotSupported, "guest RAM file " + path + " on a " + FsType(fd.get()) +
                                           " filesystem cannot be mapped shared (" + strerror(err) +
                                           "); use /dev/shm");
  }
  Status tracked;
  if (l.dirty_tracking) {
    auto reg = UffdWpRegistration::Register(probe, page);
    if (!reg.ok()) tracked = reg.status();
  }
  munmap(probe, page);
  if (!tracked.ok()) {
    // kInvalidArgument from Register means "this mapping type cannot be
    // tracked": a property of the filesystem here.
    Errc code = tracked.code() == Errc::kInvalidArgument ? Errc::kNotSupported : tracked.code();
    return Status(code, "guest RAM file " + path + " on a " + FsType(fd.get()) +
                            " filesystem cannot be write-tracked: " + tracked.ToString());
  }
  char real[PATH_MAX];
  if (realpath(path.c_str(), real) == nullptr) return Status::FromErrno(errno, "realpath " + path);
  return std::string(real);
}

}  // namespace internal
}  // namespace ftsync
