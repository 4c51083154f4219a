// ftsync: the device model (qemu-xen) of an HVM domain, driven over the QMP
// socket libxl gives it, at the points of a checkpoint where Xen's own save
// and Remus drive it:
//
//   EnableDirtyLog    xen-set-global-dirty-log {enable: true}: QEMU marks
//                     the guest frames its emulated devices write (DMA,
//                     e.g. a NIC receiving) in Xen's log-dirty bitmap
//                     (xendevicemodel_modified_memory); without it those
//                     writes never reach the replica
//   Suspend           after the vCPUs stopped: stop (no device runs, no
//                     DMA, no timers)
//   SaveState         xen-save-devices-state {filename, live: false}: the
//                     devices' state as a QEMU migration stream ("QEVM"),
//                     written by QEMU to a file, read back and removed.
//                     live false: QEMU keeps its disk images active, since
//                     the primary goes on running
//   Resume            cont, before the vCPUs run again
//   DisableDirtyLog   xen-set-global-dirty-log {enable: false}
//
// QEMU's QMP socket serves one client at a time, and libxl uses the same
// socket for its own commands (device hot-plug, CD change, save): the
// connection is opened for each such sequence and closed after it (after
// cont, after a dirty-log switch), so xl commands keep working between
// checkpoints. No Xen headers: unit-tested against a scripted QMP server.
#ifndef FTSYNC_XEN_DEVICE_MODEL_H_
#define FTSYNC_XEN_DEVICE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ftsync/status.h"

namespace ftsync {
class QmpClient;
}

namespace ftsync::xen {

struct DeviceModelOptions {
  // The QMP socket libxl starts qemu-xen with (/var/run/xen/qmp-libxl-DOMID).
  std::string qmp_path;
  // Where QEMU writes the device state: a path the device model process
  // can create (libxl uses /var/lib/xen for its own save files).
  std::string save_path;
  // Per QMP exchange (connect, or one command).
  int timeout_ms = 10000;
};

// libxl's socket and ftsync's save file for domain `domid`.
std::string DefaultDeviceModelQmpPath(uint32_t domid);
std::string DefaultDeviceModelSavePath(uint32_t domid);

// The first bytes of QEMU's migration stream (xen-save-devices-state).
inline constexpr uint8_t kQemuVmMagic[4] = {'Q', 'E', 'V', 'M'};

class XenDeviceModel {
 public:
  explicit XenDeviceModel(DeviceModelOptions options);
  ~XenDeviceModel();
  XenDeviceModel(const XenDeviceModel&) = delete;
  XenDeviceModel& operator=(const XenDeviceModel&) = delete;

  // xen-set-global-dirty-log; then disconnects. QEMU keeps one flag, not
  // a count, and aborts on a stop while the flag is clear (QEMU 7.2:
  // memory_global_dirty_log_do_stop's assertion); so in one process the
  // handles on a socket share it: the first enable sends it, the last
  // disable of a handle that enabled sends the stop, and a disable of a
  // handle that never enabled sends nothing (OK). Errors: kNotFound when
  // nothing listens on qmp_path (no device model: not an HVM domain, or
  // it exited; a refused connection is retried within timeout_ms while the
  // socket file exists, since QEMU refuses one while it serves another
  // client), kNotSupported when this QEMU lacks the command, QMP errors as
  // QmpClient reports them; each names the socket.
  Status SetGlobalDirtyLog(bool enable);
  // stop. Stays connected until Cont. Errors as above.
  Status Stop();
  // xen-save-devices-state into save_path (live false), read back and
  // removed. Call between Stop and Cont. kFailedPrecondition outside
  // them; kCorruption when the file is not a QEMU migration stream; I/O
  // errors of the file with its path.
  Result<std::vector<uint8_t>> SaveDevicesState();
  // cont; then disconnects (also when cont failed). A no-op when not
  // stopped.
  Status Cont();

  bool stopped() const { return stopped_; }
  bool dirty_log() const { return dirty_log_; }
  const DeviceModelOptions& options() const { return options_; }

 private:
  Status Connect();
  Status Run(const std::string& command, const nlohmann::json& arguments);
  void Disconnect();

  DeviceModelOptions options_;
  std::unique_ptr<QmpClient> qmp_;
  bool stopped_ = false;
  bool dirty_log_ = false;  // this handle holds a share of QEMU's dirty log
};

}  // namespace ftsync::xen

#endif  // FTSYNC_XEN_DEVICE_MODEL_H_
