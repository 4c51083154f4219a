// What the QEMU backend's tests need from the machine -- the userfaultfd /
// PAGEMAP_SCAN kernel features, qemu-system-x86_64, the project's preload
// library, a guest -- and a QemuGuest fixture that starts one QEMU.
//
// Guest: test/guest/build-guest.sh's busybox + counterd guest when that
// script builds (output under BUILD/guest, next to the test binary's
// directory), else the bare Debian kernel, which boots until it finds no
// root filesystem, panics and reboots (panic=-1), writing memory all along.
// That kernel comes from `apt-get download linux-image-6.1.*-amd64` into
// /var/cache/ftsync/kernel (once).
//
// FTSYNC_QEMU_TEST_GUEST=bare forces the bare kernel (to test that path).
//
// Anything missing makes the test WARN why and return (a skip), except
// the preload library when FTSYNC_REQUIRE_QEMU=1 (CI): then it fails.
#ifndef FTSYNC_TEST_UNIT_QEMU_QEMU_TEST_ENV_H_
#define FTSYNC_TEST_UNIT_QEMU_QEMU_TEST_ENV_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ftsync/linux_dirty_tracker.h"
#include "ftsync/qemu.h"
#include "test_util.h"
#include "testing/host_resources.h"

namespace ftsync::test {

inline bool FileExists(const std::string& p) {
  struct stat st;
  return !p.empty() && stat(p.c_str(), &st) == 0;
}

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Directory of the running test binary (BUILD/bin).
inline std::string ExeDir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : p.parent_path().string();
}

struct QemuTestEnv {
  std::string qemu = "/usr/bin/qemu-system-x86_64";
  std::string preload;
  std::string kernel;
  std::string initrd;     // empty: bare kernel
  bool counterd = false;  // the guest runs counterd (initrd from build-guest.sh)
  std::string missing;    // why QEMU tests cannot run; empty when they can
  bool preload_missing = false;
};

namespace internal_env {

inline std::string FindPreload() {
  if (const char* e = std::getenv("FTSYNC_QEMU_PRELOAD")) return e;
  return ExeDir() + "/../lib/libftsync_qemu_preload.so";
}

// The repository root: the working directory (make check runs there) or
// two levels above BUILD/bin.
inline std::string RepoRoot() {
  if (FileExists("test/guest") || FileExists("libftsync/include/ftsync/qemu.h")) return ".";
  return ExeDir() + "/../..";
}

inline bool BuildGuest(QemuTestEnv* env) {
  const std::string script = RepoRoot() + "/test/guest/build-guest.sh";
  if (!FileExists(script)) return false;
  const std::string out = ExeDir() + "/../guest";
  const std::string cmd =
      "'" + script + "' '" + out + "' > '" + ExeDir() + "/../guest-build.log' 2>&1";
  if (std::system(cmd.c_str()) != 0) return false;
  if (!FileExists(out + "/vmlinuz") || !FileExists(out + "/initrd.gz")) return false;
  env->kernel = out + "/vmlinuz";
  env->initrd = out + "/initrd.gz";
  env->counterd = true;
  return true;
}

inline bool BareKernel(QemuTestEnv* env) {
  const std::string dir = "/var/cache/ftsync/kernel";
  if (!FileExists(dir + "/vmlinuz")) {
    const std::string cmd =
        "set -e; mkdir -p " + dir + "; cd " + dir +
        "; rm -rf x *.deb; pkg=$(apt-cache depends linux-image-amd64 | "
        "sed -n 's/^ *Depends: \\(linux-image-6\\.1[^ ]*-amd64\\)$/\\1/p' | head -n1); "
        "[ -n \"$pkg\" ]; apt-get download -o APT::Sandbox::User=root \"$pkg\" >/dev/null; "
        "dpkg-deb -x ./*.deb x; cp x/boot/vmlinuz-* vmlinuz.tmp; mv vmlinuz.tmp vmlinuz; "
        "rm -rf x ./*.deb";
    if (std::system(("(" + cmd + ") > /dev/null 2>&1").c_str()) != 0) return false;
  }
  env->kernel = dir + "/vmlinuz";
  return FileExists(env->kernel);
}

}  // namespace internal_env

// Computed once per test binary.
inline const QemuTestEnv& Env() {
  static const QemuTestEnv env = [] {
    QemuTestEnv e;
    Status probe = ProbeUffdWpAsync();
    if (!probe.ok()) {
      e.missing = "kernel lacks userfaultfd write-protect / PAGEMAP_SCAN: " + probe.ToString();
      return e;
    }
    if (!FileExists(e.qemu)) {
      e.missing = e.qemu + " is not installed (Debian package qemu-system-x86)";
      return e;
    }
    e.preload = internal_env::FindPreload();
    if (!FileExists(e.preload)) {
      e.missing = "preload library " + e.preload +
                  " is not built (make build/lib/libftsync_qemu_preload.so)";
      e.preload_missing = true;
      return e;
    }
    const char* which = std::getenv("FTSYNC_QEMU_TEST_GUEST");
    const bool bare = which != nullptr && std::string(which) == "bare";
    if ((bare || !internal_env::BuildGuest(&e)) && !internal_env::BareKernel(&e)) {
      e.missing =
          "no guest kernel: test/guest/build-guest.sh failed and "
          "apt-get download linux-image-6.1.*-amd64 failed";
    }
    return e;
  }();
  return env;
}

// Returns from the test (a skip) with a warning when QEMU tests cannot run.
#define FTSYNC_REQUIRE_QEMU_ENV()                                               \
  do {                                                                          \
    const auto& qemu_env_ = ::ftsync::test::Env();                              \
    if (!qemu_env_.missing.empty()) {                                           \
      const char* strict_ = std::getenv("FTSYNC_REQUIRE_QEMU");                 \
      if (qemu_env_.preload_missing && strict_ != nullptr && *strict_ == '1') { \
        FAIL(qemu_env_.missing);                                                \
      }                                                                         \
      WARN("skipping: " + qemu_env_.missing);                                   \
      return;                                                                   \
    }                                                                           \
  } while (0)

using testing::FreeLoopbackPort;

// Sends one request line to counterd on 127.0.0.1:port and returns the
// reply line ("" on failure).
inline std::string CounterdRequest(int port, const std::string& line, int timeout_s = 10) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    std::string req = line + "\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char c;
      while (recv(fd, &c, 1, 0) == 1 && c != '\n') out += c;
    }
  }
  close(fd);
  return out;
}

// REQUIREs that QemuGuest `g` starts, and shows why when it does not.
#define REQUIRE_STARTED(g)                         \
  do {                                             \
    const ::ftsync::Status started_ = (g).Start(); \
    INFO(started_.ToString());                     \
    REQUIRE(started_.ok());                        \
  } while (0)

// One QEMU for a test: files in a temporary directory, RAM in /dev/shm.
class QemuGuest {
 public:
  // `boot`: with the test guest (kernel, initrd); otherwise QEMU runs only
  // its firmware (no bootable device: SeaBIOS idles), which starts in
  // ~50 ms.
  explicit QemuGuest(bool boot, uint64_t ram_bytes = uint64_t{128} << 20) {
    static std::atomic<int> counter{0};
    const QemuTestEnv& env = Env();
    ram_path_ =
        "/dev/shm/ftsync-qemu-test-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    launch.qemu_binary = env.qemu;
    launch.machine = "pc-q35-7.2";
    launch.ram_bytes = ram_bytes;
    launch.ram_path = ram_path_;
    launch.qmp_socket = dir.Sub("qmp.sock");
    launch.preload_library = env.preload;
    launch.log_path = dir.Sub("qemu.log");
    launch.kill_with_parent = true;
    launch.start_timeout_ms = 60000;
    serial_path = dir.Sub("serial.txt");
    launch.extra_args = {"-accel",   "tcg",
                         "-smp",     "1",
                         "-machine", "vmport=off,sata=off,smbus=off,i8042=off,usb=off",
                         "-serial",  "file:" + serial_path};
    if (boot) {
      launch.extra_args.insert(launch.extra_args.end(), {"-kernel", env.kernel});
      if (env.counterd) {
        port = FreeLoopbackPort();
        launch.extra_args.insert(
            launch.extra_args.end(),
            {"-initrd", env.initrd, "-no-reboot", "-append", "console=ttyS0 quiet panic=-1",
             "-netdev",
             "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:" + std::to_string(port) + "-:7000",
             "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:f7:5e:01,romfile="});
      } else {
        // No -no-reboot: the bare kernel panics and boots again, forever.
        launch.extra_args.insert(launch.extra_args.end(), {"-append", "console=ttyS0 panic=-1"});
      }
    }
  }
  ~QemuGuest() {
    domain.reset();
    process.reset();
    unlink(ram_path_.c_str());
  }

  Status Start() {
    auto p = QemuProcess::Launch(launch);
    if (!p.ok()) return p.status();
    process = std::move(p).value();
    auto d = QemuDomain::Attach(process.get());
    if (!d.ok()) return d.status();
    domain = std::move(d).value();
    return Status::OK();
  }

  // Waits until the serial log contains `text`.
  bool WaitForSerial(const std::string& text, int timeout_ms) const {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < end) {
      if (ReadWholeFile(serial_path).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  // A restore of this guest: the same launch with its own socket, log,
  // serial file and forwarded port.
  QemuLaunch RestoreLaunch(int* restored_port) const {
    QemuLaunch l = launch;
    l.qmp_socket = dir.Sub("qmp-restored.sock");
    l.log_path = dir.Sub("qemu-restored.log");
    *restored_port = FreeLoopbackPort();
    for (std::string& a : l.extra_args) {
      if (a == "file:" + serial_path) a = "file:" + dir.Sub("serial-restored.txt");
      if (a.rfind("user,id=n0", 0) == 0) {
        a = "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:" + std::to_string(*restored_port) +
            "-:7000";
      }
    }
    return l;
  }

  TempDir dir;
  QemuLaunch launch;
  std::string serial_path;
  int port = 0;  // counterd's forwarded port (test guest only)
  std::unique_ptr<QemuProcess> process;
  std::unique_ptr<QemuDomain> domain;

 private:
  std::string ram_path_;
};

// Every frame of `d` (read through ReadFrames).
inline std::vector<uint8_t> AllFrames(Domain* d) {
  std::vector<uint64_t> pfns(d->FrameCount());
  for (uint64_t i = 0; i < pfns.size(); ++i) pfns[i] = i;
  std::vector<uint8_t> out(pfns.size() * d->PageSize());
  std::vector<int> errors(pfns.size());
  if (!d->ReadFrames(pfns, out.data(), errors).ok()) out.clear();
  return out;
}

}  // namespace ftsync::test

#endif  // FTSYNC_TEST_UNIT_QEMU_QEMU_TEST_ENV_H_
