// The QEMU guest of ftd: QEMU with its RAM in a shared file (dirty tracking
// by the preload library), its NIC on a netdev stream to the frame bridge,
// its serial console on a socket to the console relay.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "console_relay.h"
#include "frame_bridge.h"
#include "ftsync/qemu.h"
#include "guest.h"

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

namespace {

std::string DefaultPreload() {
  // ftd lives in BUILD/bin (or PREFIX/bin); the preload in ../lib.
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  self[n] = 0;
  auto dir = std::filesystem::path(self).parent_path().parent_path() / "lib";
  return (dir / "libftsync_qemu_preload.so").string();
}

class QemuGuest : public Guest {
 public:
  QemuGuest(const Options& o, GuestContext ctx) : o_(o), ctx_(ctx) {}
  ~QemuGuest() override {
    domain_.reset();
    if (process_) {
      (void)process_->Kill(SIGKILL);
      (void)process_->WaitForExit(5000);
    }
    // The bridge and relay own io-thread objects: destroy them there.
    if (bridge_ || console_) {
      auto b = std::shared_ptr<FrameBridge>(bridge_.release());
      auto c = std::shared_ptr<ConsoleRelay>(console_.release());
      asio::post(*ctx_.io, [b, c] {});
    }
  }

  // The parts common to launch and restore: run dir, bridge, console, argv.
  Status Prepare(ftsync::QemuLaunch* l, const std::string& ram_path) {
    std::error_code ec;
    std::filesystem::create_directories(o_.run_dir, ec);
    if (ec) return Status(Errc::kIoError, "run directory " + o_.run_dir + ": " + ec.message());
    if (o_.qemu_kernel.empty()) return Status(Errc::kInvalidArgument, "--qemu-kernel is required with --hypervisor qemu");
    auto tap = OpenTap(o_.tap);
    if (!tap.ok()) return tap.status();
    bridge_ = std::make_unique<FrameBridge>(*ctx_.io, *tap, ctx_.log);
    FTSYNC_RETURN_IF_ERROR(bridge_->Listen(o_.run_dir + "/net.sock"));
    // The guest's address for announcements after a takeover: its MAC, and
    // the IPv4 address /init takes from ftsync.ip= on the kernel command line.
    std::string ip;
    if (auto at = o_.qemu_append.find("ftsync.ip="); at != std::string::npos) {
      ip = o_.qemu_append.substr(at + 10);
      ip = ip.substr(0, ip.find_first_of("/ "));
    }
    if (!ip.empty()) FTSYNC_RETURN_IF_ERROR(bridge_->SetGuestAddress(o_.qemu_mac, ip));
    std::string console_log = o_.console_log.empty() ? o_.run_dir + "/console.log" : o_.console_log;
    console_ = std::make_unique<ConsoleRelay>(*ctx_.io, console_log, ctx_.log);
    FTSYNC_RETURN_IF_ERROR(console_->Listen(o_.run_dir + "/console.sock"));
    if (o_.no_net_buffer) ctx_.log->Warn("--no-net-buffer: guest frames leave before their epoch is safe (UNSAFE)");

    l->qemu_binary = o_.qemu_binary;
    l->machine = "pc-q35-7.2";
    l->ram_bytes = o_.qemu_ram_mb << 20;
    l->ram_path = ram_path;
    l->qmp_socket = o_.run_dir + "/qmp.sock";
    l->preload_library = o_.qemu_preload.empty() ? DefaultPreload() : o_.qemu_preload;
    l->log_path = o_.run_dir + "/qemu.log";
    l->extra_args = {"-machine", "vmport=off,sata=off,smbus=off,i8042=off,usb=off",
                     "-accel", "tcg", "-smp", "1", "-kernel", o_.qemu_kernel,
                     "-chardev", "socket,id=con0,path=" + o_.run_dir + "/console.sock,server=off",
                     "-serial", "chardev:con0",
                     "-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path=" + o_.run_dir + "/net.sock",
                     "-device", "virtio-net-pci,netdev=n0,mac=" + o_.qemu_mac + ",romfile="};
    if (!o_.qemu_initrd.empty()) {
      l->extra_args.push_back("-initrd");
      l->extra_args.push_back(o_.qemu_initrd);
    }
    l->extra_args.push_back("-append");
    l->extra_args.push_back(o_.qemu_append);
    return Status::OK();
  }

  Status Launch() {
    ftsync::QemuLaunch l;
    FTSYNC_RETURN_IF_ERROR(Prepare(&l, o_.run_dir + "/guest-ram"));
    auto p = ftsync::QemuProcess::Launch(l, ctx_.log);
    if (!p.ok()) return p.status();
    process_ = std::move(p).value();
    auto d = ftsync::QemuDomain::Attach(process_.get(), ftsync::QemuDomainOptions{.logger = ctx_.log});
    if (!d.ok()) return d.status();
    domain_ = std::move(d).value();
    return Status::OK();
  }

  Status Restore(ftsync::ReplicaImage* replica) {
    auto state = replica->ReadState();
    if (!state.ok()) return state.status();
    ftsync::QemuLaunch l;
    // The replica's image becomes the guest's RAM: it is not a replica any more.
    FTSYNC_RETURN_IF_ERROR(Prepare(&l, replica->memory_path()));
    // Tracked like a primary's guest, so that it can be protected again
    // (ftd ctl protect, --reprotect) without a restart.
    l.dirty_tracking = true;
    auto r = ftsync::QemuDomain::Restore(l, replica->memory_path(), *state,
                                         ftsync::QemuDomainOptions{.logger = ctx_.log});
    if (!r.ok()) return r.status();
    process_ = std::move(r->process);
    domain_ = std::move(r->domain);
    // A taken-over guest is unprotected: its output flows at once.
    bridge_->outbound().SetProtected(false);
    console_->outbound().SetProtected(false);
    return Status::OK();
  }

  ftsync::Domain* domain() override { return domain_.get(); }

  Status RunFor(int ms) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    if (process_ && process_->Exited())
      return Status(Errc::kPeerGone, "QEMU exited: " + process_->LogTail(400));
    return Status::OK();
  }

  std::string Describe() const override {
    std::string s = "qemu pid " + std::to_string(process_ ? process_->pid() : -1) + ", " +
                    std::to_string(o_.qemu_ram_mb) + " MiB";
    if (bridge_) {
      auto c = bridge_->counters();
      s += ", frames out " + std::to_string(c.from_guest) + " in " + std::to_string(c.to_guest);
    }
    return s;
  }

  std::vector<ftsync::CheckpointDevice*> devices() override {
    std::vector<ftsync::CheckpointDevice*> d = {&console_->outbound()};
    if (!o_.no_net_buffer) d.push_back(&bridge_->outbound());
    return d;
  }

  Status Announce() override {
    // Announce a few times: the first may race the switch's port coming up.
    Status s;
    for (int i = 0; i < 3; ++i) {
      s = bridge_->Announce();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return s;
  }

 private:
  Options o_;
  GuestContext ctx_;
  std::unique_ptr<FrameBridge> bridge_;
  std::unique_ptr<ConsoleRelay> console_;
  std::unique_ptr<ftsync::QemuProcess> process_;
  std::unique_ptr<ftsync::QemuDomain> domain_;
};

}  // namespace

ftsync::Result<std::unique_ptr<Guest>> LaunchQemuGuest(const Options& o, GuestContext ctx) {
  auto g = std::make_unique<QemuGuest>(o, ctx);
  FTSYNC_RETURN_IF_ERROR(g->Launch().Annotate("start QEMU"));
  return std::unique_ptr<Guest>(std::move(g));
}

ftsync::Result<std::unique_ptr<Guest>> RestoreQemuGuest(const Options& o, GuestContext ctx,
                                                       ftsync::ReplicaImage* replica) {
  auto g = std::make_unique<QemuGuest>(o, ctx);
  FTSYNC_RETURN_IF_ERROR(g->Restore(replica).Annotate("restore QEMU from the replica"));
  return std::unique_ptr<Guest>(std::move(g));
}

}  // namespace ftd
