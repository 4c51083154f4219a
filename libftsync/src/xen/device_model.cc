// ftsync: the qemu-xen device model over QMP (contract in device_model.h).
#include "xen/device_model.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "ftsync/qemu.h"

namespace ftsync::xen {

std::string DefaultDeviceModelQmpPath(uint32_t domid) {
  return "/var/run/xen/qmp-libxl-" + std::to_string(domid);
}

std::string DefaultDeviceModelSavePath(uint32_t domid) {
  return "/var/lib/xen/ftsync-dm-save." + std::to_string(domid);
}

XenDeviceModel::XenDeviceModel(DeviceModelOptions options) : options_(std::move(options)) {}

XenDeviceModel::~XenDeviceModel() {
  // A device model left stopped would hang the guest's I/O.
  if (stopped_) (void)Cont();
  if (dirty_log_) (void)SetGlobalDirtyLog(false);
}

Status XenDeviceModel::Connect() {
  if (qmp_) return Status::OK();
  // QEMU listens with a backlog of one and serves one client at a time: a
  // connection is refused while another client (libxl, xl) is being served.
  // Retry while the socket exists, within the timeout.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  Result<std::unique_ptr<QmpClient>> c = QmpClient::Connect(options_.qmp_path, options_.timeout_ms);
  struct stat sb;
  while (!c.ok() && c.status().code() == Errc::kNotFound && ::stat(options_.qmp_path.c_str(), &sb) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    c = QmpClient::Connect(options_.qmp_path, static_cast<int>(std::max<int64_t>(1, left.count())));
  }
  if (!c.ok()) {
    Status s = c.status();
    if (s.code() == Errc::kNotFound)
      return Status(Errc::kNotFound, "device model: nothing listens on " + options_.qmp_path +
                                         " (not an HVM domain with qemu-xen, or its device model exited)");
    return s.Annotate("device model QMP " + options_.qmp_path);
  }
  qmp_ = std::move(c).value();
  return Status::OK();
}

void XenDeviceModel::Disconnect() { qmp_.reset(); }

Status XenDeviceModel::Run(const std::string& command, const nlohmann::json& arguments) {
  FTSYNC_RETURN_IF_ERROR(Connect());
  Result<nlohmann::json> r = qmp_->Execute(command, arguments, options_.timeout_ms);
  if (!r.ok()) {
    // The connection may be out of step (a late answer): start afresh.
    if (r.status().code() == Errc::kIoError || r.status().code() == Errc::kPeerGone) Disconnect();
    return r.status().Annotate("device model " + options_.qmp_path);
  }
  return Status::OK();
}

namespace {
// Handles in this process holding QEMU's global dirty log, per QMP socket.
std::mutex g_dirty_mu;
std::map<std::string, int>& DirtyLogHolders() {
  static std::map<std::string, int> holders;
  return holders;
}
}  // namespace

Status XenDeviceModel::SetGlobalDirtyLog(bool enable) {
  if (enable == dirty_log_) return Status::OK();
  std::lock_guard<std::mutex> l(g_dirty_mu);
  int& holders = DirtyLogHolders()[options_.qmp_path];
  Status s;
  if ((enable && holders == 0) || (!enable && holders == 1)) {
    s = Run("xen-set-global-dirty-log", nlohmann::json{{"enable", enable}});
    if (!stopped_) Disconnect();
  }
  // A failed stop still gives up this handle's share: QEMU may be gone.
  if (s.ok() || !enable) {
    holders += enable ? 1 : -1;
    dirty_log_ = enable;
  }
  if (holders == 0) DirtyLogHolders().erase(options_.qmp_path);
  return s;
}

Status XenDeviceModel::Stop() {
  Status s = Run("stop", nullptr);
  if (!s.ok()) {
    Disconnect();
    return s;
  }
  stopped_ = true;
  return Status::OK();
}

Result<std::vector<uint8_t>> XenDeviceModel::SaveDevicesState() {
  if (!stopped_)
    return Status(Errc::kFailedPrecondition, "device model: save its state only while it is stopped");
  const std::string& path = options_.save_path;
  (void)::unlink(path.c_str());
  FTSYNC_RETURN_IF_ERROR(
      Run("xen-save-devices-state", nlohmann::json{{"filename", path}, {"live", false}}));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "device model state " + path);
  std::vector<uint8_t> blob;
  struct stat sb;
  if (::fstat(fd, &sb) == 0 && sb.st_size > 0) blob.reserve(static_cast<size_t>(sb.st_size));
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Status::FromErrno(e, "read device model state " + path);
    }
    if (n == 0) break;
    blob.insert(blob.end(), buf, buf + n);
  }
  ::close(fd);
  (void)::unlink(path.c_str());
  if (blob.size() < sizeof kQemuVmMagic || std::memcmp(blob.data(), kQemuVmMagic, sizeof kQemuVmMagic) != 0)
    return Status(Errc::kCorruption, "device model state " + path + " (" + std::to_string(blob.size()) +
                                         " bytes) is not a QEMU migration stream (no QEVM magic)");
  return blob;
}

Status XenDeviceModel::Cont() {
  if (!stopped_) return Status::OK();
  Status s = Run("cont", nullptr);
  stopped_ = false;
  Disconnect();
  return s;
}

}  // namespace ftsync::xen
