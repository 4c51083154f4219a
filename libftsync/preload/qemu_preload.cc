// ftsync: the LD_PRELOAD shared object that makes a stock QEMU's guest RAM
// trackable from outside QEMU.
//
// Userfaultfd write-protect must be registered by a userfaultfd created in
// the process that owns the mapping. This object hooks mmap/mmap64 in QEMU;
// when QEMU maps the guest-RAM file (writable, MAP_SHARED, the whole RAM
// size), it registers the new range with UffdWpRegistration and reports
// "ram ADDR LEN" to the launcher. A PagemapDirtyTracker in the replication
// process then reads and clears the written pages of that range.
//
// Fail loudly: if the guest RAM cannot be tracked (registration fails, the
// file is mapped MAP_PRIVATE because of share=off, a second writable
// mapping appears, the configuration is missing) the object prints one line
// starting "ftsync-preload:" on stderr, reports "error ..." and makes the
// mmap fail (or QEMU exit), so QEMU refuses to start instead of running an
// untracked guest.
//
// Configuration, from the environment (set by QemuProcess::Launch; removed
// from the environment at load, so QEMU's children do not inherit it):
//   FTSYNC_RAM_PATH   the guest-RAM file (must exist when QEMU starts)
//   FTSYNC_RAM_SIZE   guest RAM bytes (decimal)
//   FTSYNC_REPORT_FD  optional: a descriptor inherited from the launcher;
//                     receives the lines "loaded PID", "ram ADDR LEN" or
//                     "error MESSAGE", and is closed after "ram"/"error".
//
// Reservations are ignored: QEMU first reserves address space with a
// PROT_NONE mapping (anonymous in 7.2; of the RAM file with MAP_PRIVATE in
// older versions) and then maps the file with MAP_FIXED on top of it. Only
// mappings with PROT_WRITE count, and the registered range is the one the
// MAP_FIXED call returns.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "ftsync/linux_dirty_tracker.h"

namespace {

using MmapFn = void* (*)(void*, size_t, int, int, int, off_t);

struct Config {
  bool active = false;  // configuration read and valid
  std::string ram_path;
  uint64_t ram_size = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  int report_fd = -1;
};

// Not a namespace-scope object: its dynamic initialisation could run after
// Init() (the order of constructors and initialisers is unspecified).
Config& TheConfig() {
  static Config* config = new Config;
  return *config;
}
MmapFn g_real_mmap = nullptr;
MmapFn g_real_mmap64 = nullptr;
std::mutex g_mu;  // guards g_registration and the report channel
ftsync::UffdWpRegistration* g_registration = nullptr;  // lives until exit

// Writes all of `s` to fd, ignoring errors (the launcher may be gone).
void WriteAll(int fd, const std::string& s) {
  size_t off = 0;
  while (fd >= 0 && off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

void Report(const std::string& line) { WriteAll(TheConfig().report_fd, line + "\n"); }

void CloseReport() {
  if (TheConfig().report_fd >= 0) close(TheConfig().report_fd);
  TheConfig().report_fd = -1;
}

// Prints the failure on stderr (QEMU's log) and to the launcher.
void Fail(const std::string& message) {
  WriteAll(2, "ftsync-preload: " + message + "; QEMU must not run with untracked guest RAM\n");
  Report("error " + message);
  CloseReport();
}

// The next definition of `name`, or nullptr.
MmapFn Next(const char* name) { return reinterpret_cast<MmapFn>(dlsym(RTLD_NEXT, name)); }

// Maps without recursion when the real symbol is not known yet (dlsym may
// allocate, and the allocator may call mmap).
void* RawMmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  long r = syscall(SYS_mmap, addr, len, prot, flags, fd, off);
  return reinterpret_cast<void*>(r);  // -errno values: see below
}

void* CallReal(MmapFn fn, void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (fn != nullptr) return fn(addr, len, prot, flags, fd, off);
  void* r = RawMmap(addr, len, prot, flags, fd, off);
  uintptr_t v = reinterpret_cast<uintptr_t>(r);
  if (v > static_cast<uintptr_t>(-4096)) {
    errno = static_cast<int>(-static_cast<intptr_t>(v));
    return MAP_FAILED;
  }
  return r;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// True when `fd` is the guest-RAM file. Compares device and inode rather
// than the /proc/self/fd path: symlinks, bind mounts and relative names all
// resolve to the same file.
bool IsRamFile(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) return false;
  return st.st_dev == TheConfig().dev && st.st_ino == TheConfig().ino;
}

// Called after the real mmap of the RAM file succeeded at `addr`. Returns
// addr, or MAP_FAILED with errno set when QEMU must not go on.
void* OnRamMapped(void* addr, size_t len, int flags) {
  std::lock_guard<std::mutex> lock(g_mu);
  const std::string what = TheConfig().ram_path + " mapped at " +
                           Hex(reinterpret_cast<uintptr_t>(addr)) + "+" + Hex(len);
  auto refuse = [&](const std::string& why, int err) -> void* {
    Fail(why);
    munmap(addr, len);
    errno = err;
    return MAP_FAILED;
  };
  const int type = flags & MAP_TYPE;
  if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE) {
    return refuse("guest RAM file " + what +
                      " with MAP_PRIVATE: writes would not reach the file "
                      "(the memory backend needs share=on)",
                  EPERM);
  }
  if (len != TheConfig().ram_size) {
    return refuse("guest RAM file " + what + ", expected the whole RAM (" +
                      std::to_string(TheConfig().ram_size) + " bytes)",
                  EINVAL);
  }
  if (g_registration != nullptr) {
    return refuse("guest RAM file " + what + " a second time; writes through it would be missed",
                  EBUSY);
  }
  auto reg = ftsync::UffdWpRegistration::Register(addr, len);
  if (!reg.ok()) {
    return refuse(
        "cannot register guest RAM " + what + " for write tracking: " + reg.status().ToString(),
        EPERM);
  }
  g_registration = std::move(reg).value().release();
  Report("ram " + Hex(reinterpret_cast<uintptr_t>(addr)) + " " + Hex(len));
  CloseReport();
  return addr;
}

void* Hooked(MmapFn real, void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  void* r = CallReal(real, addr, len, prot, flags, fd, off);
  if (r == MAP_FAILED || fd < 0 || !TheConfig().active || (prot & PROT_WRITE) == 0 ||
      (flags & MAP_ANONYMOUS) != 0) {
    return r;
  }
  if (!IsRamFile(fd)) return r;
  return OnRamMapped(r, len, flags);
}

// Refuses to let the process run misconfigured.
[[noreturn]] void ConfigError(const std::string& message) {
  Fail(message);
  _exit(1);
}

__attribute__((constructor)) void Init() {
  g_real_mmap = Next("mmap");
  g_real_mmap64 = Next("mmap64");
  if (g_real_mmap64 == nullptr) g_real_mmap64 = g_real_mmap;

  const char* fd_env = getenv("FTSYNC_REPORT_FD");
  if (fd_env != nullptr) {
    char* end = nullptr;
    long fd = strtol(fd_env, &end, 10);
    if (end != fd_env && *end == '\0' && fd >= 0 && fcntl(static_cast<int>(fd), F_GETFD) >= 0) {
      TheConfig().report_fd = static_cast<int>(fd);
      // Children of QEMU must not write into the launcher's channel.
      fcntl(TheConfig().report_fd, F_SETFD, FD_CLOEXEC);
    }
  }
  Report("loaded " + std::to_string(getpid()));

  const char* path = getenv("FTSYNC_RAM_PATH");
  const char* size = getenv("FTSYNC_RAM_SIZE");
  // Children QEMU spawns (helpers, exec: migration) run untouched.
  unsetenv("LD_PRELOAD");
  unsetenv("FTSYNC_RAM_PATH");
  unsetenv("FTSYNC_RAM_SIZE");
  unsetenv("FTSYNC_REPORT_FD");

  if (path == nullptr || *path == '\0' || size == nullptr) {
    ConfigError(
        "FTSYNC_RAM_PATH and FTSYNC_RAM_SIZE must name the guest RAM "
        "file and its size");
  }
  TheConfig().ram_path = path;
  char* end = nullptr;
  TheConfig().ram_size = strtoull(size, &end, 10);
  if (end == size || *end != '\0' || TheConfig().ram_size == 0) {
    ConfigError(std::string("bad FTSYNC_RAM_SIZE '") + size + "'");
  }
  struct stat st;
  if (stat(path, &st) != 0) {
    ConfigError("guest RAM file " + TheConfig().ram_path + ": " + std::strerror(errno));
  }
  TheConfig().dev = st.st_dev;
  TheConfig().ino = st.st_ino;
  TheConfig().active = true;
}

}  // namespace

// The exported hooks. QEMU (Debian's 7.2) imports mmap64; glibc's mmap and
// mmap64 are the same function on 64-bit targets.
extern "C" __attribute__((visibility("default"))) void* mmap(void* addr, size_t len, int prot,
                                                             int flags, int fd,
                                                             off_t off) noexcept {
  return Hooked(g_real_mmap, addr, len, prot, flags, fd, off);
}

extern "C" __attribute__((visibility("default"))) void* mmap64(void* addr, size_t len, int prot,
                                                               int flags, int fd,
                                                               off_t off) noexcept {
  return Hooked(g_real_mmap64, addr, len, prot, flags, fd, off);
}
