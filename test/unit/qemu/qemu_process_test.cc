// QemuLaunch / QemuProcess: the command line, the checks made before
// starting QEMU (no QEMU needed), and -- with QEMU -- the start-up
// handshake and its failures: preload not loaded, share=off, QEMU exiting.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <string>
#include <vector>

#include "ftsync/qemu.h"
#include "qemu/qemu_test_env.h"
#include "test_util.h"

namespace ftsync {
namespace {

using test::Env;
using test::QemuGuest;

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A launch that would pass every check, with files in `dir`.
QemuLaunch GoodLaunch(const test::TempDir& dir) {
  QemuLaunch l;
  l.qemu_binary = "/bin/true";  // exists and is executable
  l.ram_bytes = 1 << 20;
  l.ram_path = dir.Sub("ram");
  l.qmp_socket = dir.Sub("qmp.sock");
  l.preload_library = "/bin/true";
  return l;
}

TEST_CASE("qemu launch: the command line", "[qemu]") {
  QemuLaunch l;
  l.ram_bytes = 64 << 20;
  l.ram_path = "/dev/shm/a,b";
  l.qmp_socket = "/run/q.sock";
  l.extra_args = {"-kernel", "K"};
  std::vector<std::string> a = BuildQemuArgv(l);
  REQUIRE(a.size() > 2);
  CHECK(a[0] == "/usr/bin/qemu-system-x86_64");
  CHECK(Has(a, "q35,memory-backend=ram0"));
  CHECK(Has(a, "memory-backend-file,id=ram0,size=67108864,mem-path=/dev/shm/a,,b,share=on"));
  CHECK(Has(a, "unix:/run/q.sock,server=on,wait=off"));
  CHECK(Has(a, "-nodefaults"));
  CHECK(Has(a, "-no-user-config"));
  CHECK_FALSE(Has(a, "-incoming"));
  CHECK(a[a.size() - 2] == "-kernel");  // extra arguments come last
  l.incoming = true;
  l.machine = "pc-q35-7.2";
  a = BuildQemuArgv(l);
  CHECK(Has(a, "pc-q35-7.2,memory-backend=ram0"));
  auto in = std::find(a.begin(), a.end(), "-incoming");
  REQUIRE(in != a.end());
  CHECK(*(in + 1) == "defer");
  CHECK(Has(a, "-S"));
}

TEST_CASE("qemu launch: a missing QEMU binary is a clear error", "[qemu]") {
  test::TempDir dir;
  QemuLaunch l = GoodLaunch(dir);
  l.qemu_binary = dir.Sub("no-such-qemu");
  auto p = QemuProcess::Launch(l);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Errc::kNotFound);
  CHECK_THAT(p.status().context(),
             Catch::Contains(l.qemu_binary) && Catch::Contains("qemu-system-x86"));
}

TEST_CASE("qemu launch: a missing preload library is a clear error", "[qemu]") {
  test::TempDir dir;
  QemuLaunch l = GoodLaunch(dir);
  l.preload_library = dir.Sub("libftsync_qemu_preload.so");
  auto p = QemuProcess::Launch(l);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Errc::kNotFound);
  CHECK_THAT(p.status().context(),
             Catch::Contains("preload library") && Catch::Contains(l.preload_library));
  l.preload_library.clear();
  CHECK(QemuProcess::Launch(l).status().code() == Errc::kInvalidArgument);
}

TEST_CASE("qemu launch: bad sizes and paths", "[qemu]") {
  test::TempDir dir;
  QemuLaunch l = GoodLaunch(dir);
  l.ram_bytes = 4097;
  CHECK(QemuProcess::Launch(l).status().code() == Errc::kInvalidArgument);
  l = GoodLaunch(dir);
  l.qmp_socket = dir.Sub(std::string(120, 's'));
  CHECK(QemuProcess::Launch(l).status().code() == Errc::kInvalidArgument);
  l = GoodLaunch(dir);
  l.ram_path = dir.Sub("no/such/dir/ram");
  auto p = QemuProcess::Launch(l);
  CHECK(p.status().code() == Errc::kNotFound);
  CHECK_THAT(p.status().context(), Catch::Contains("directory does not exist"));
  l = GoodLaunch(dir);
  l.ram_path = dir.path();
  CHECK(QemuProcess::Launch(l).status().code() == Errc::kInvalidArgument);
  // An existing RAM file holds a guest's memory: its size must match.
  l = GoodLaunch(dir);
  std::ofstream(l.ram_path) << "not a megabyte";
  p = QemuProcess::Launch(l);
  CHECK(p.status().code() == Errc::kInvalidArgument);
  CHECK_THAT(p.status().context(), Catch::Contains("has 14 bytes"));
  l.machine = "q35,usb=on";
  CHECK(QemuProcess::Launch(l).status().code() == Errc::kInvalidArgument);
}

TEST_CASE("qemu launch: arguments that would defeat the dirty log are refused", "[qemu]") {
  test::TempDir dir;
  for (std::vector<std::string> extra : {std::vector<std::string>{"-daemonize"},
                                         {"-device", "virtio-balloon-pci"},
                                         {"-device", "virtio-mem-pci,memdev=m1"}}) {
    QemuLaunch l = GoodLaunch(dir);
    l.extra_args = extra;
    auto p = QemuProcess::Launch(l);
    CHECK(p.status().code() == Errc::kInvalidArgument);
    CHECK_THAT(p.status().context(), Catch::Contains("dirty"));
  }
}

TEST_CASE("qemu launch: QEMU starts with its RAM registered, and stops with the object",
          "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  REQUIRE_STARTED(g);
  const pid_t pid = g.process->pid();
  CHECK(g.process->ram_addr() != 0);
  CHECK_FALSE(g.process->Exited());
  // QEMU's own mapping of the RAM file starts at the reported address.
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line, want = g.launch.ram_path;
  bool found = false;
  while (std::getline(maps, line)) {
    if (line.find(want) == std::string::npos) continue;
    unsigned long start = std::stoul(line.substr(0, line.find('-')), nullptr, 16);
    if (start == g.process->ram_addr()) found = true;
  }
  CHECK(found);
  g.domain.reset();
  g.process.reset();  // kills and reaps
  CHECK(kill(pid, 0) != 0);
  struct stat st;
  CHECK(stat(g.launch.qmp_socket.c_str(), &st) != 0);  // the stale socket is gone
}

TEST_CASE("qemu launch: QEMU that cannot load the preload library does not run", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  // A file the dynamic loader refuses: it prints an error and runs QEMU
  // anyway, untracked. Launch must notice and refuse.
  g.launch.preload_library = g.dir.Sub("not-an-elf.so");
  std::ofstream(g.launch.preload_library) << "garbage";
  auto p = QemuProcess::Launch(g.launch);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Errc::kFailedPrecondition);
  CHECK_THAT(p.status().context(), Catch::Contains("without the preload library"));
}

TEST_CASE("qemu launch: RAM without share=on makes QEMU refuse to start", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  std::vector<std::string> argv = BuildQemuArgv(g.launch);
  for (std::string& a : argv) {
    auto at = a.find("share=on");
    if (at != std::string::npos) a.replace(at, 8, "share=off");
  }
  auto p = QemuProcess::LaunchArgv(g.launch, argv);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Errc::kNotSupported);
  CHECK_THAT(p.status().context(),
             Catch::Contains("QEMU refused to start") && Catch::Contains("share=on"));
  // QEMU's log has the preload's line, for whoever reads QEMU's output.
  CHECK_THAT(test::ReadWholeFile(g.launch.log_path), Catch::Contains("ftsync-preload:"));
}

TEST_CASE("qemu launch: QEMU exiting at start-up is reported with its own words", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  g.launch.extra_args.push_back("-no-such-option");
  auto p = QemuProcess::Launch(g.launch);
  REQUIRE_FALSE(p.ok());
  CHECK(p.status().code() == Errc::kIoError);
  CHECK_THAT(p.status().context(),
             Catch::Contains("exited during start-up") && Catch::Contains("-no-such-option"));
}

TEST_CASE("qemu launch: without dirty tracking QEMU runs plain", "[qemu][slow]") {
  FTSYNC_REQUIRE_QEMU_ENV();
  QemuGuest g(/*boot=*/false);
  g.launch.dirty_tracking = false;
  g.launch.preload_library = "/nonexistent";  // not needed
  REQUIRE_STARTED(g);
  CHECK(g.process->ram_addr() == 0);
  Status s = g.domain->EnableDirtyLog();
  CHECK(s.code() == Errc::kFailedPrecondition);
  CHECK_THAT(s.context(), Catch::Contains("without the preload library"));
  CHECK(g.domain->Suspend().ok());
  CHECK(g.domain->SaveState().ok());
  CHECK(g.domain->Resume().ok());
}

}  // namespace
}  // namespace ftsync
