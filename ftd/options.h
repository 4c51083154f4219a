// ftd's configuration: every option has a default, a --help line, and the
// same name in a configuration file (`name = value`, '#' comments) as on
// the command line (`--name value` or `--name=value`; flags take no value).
// The command line wins over the file.
#ifndef FTSYNC_FTD_OPTIONS_H_
#define FTSYNC_FTD_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftsync/status.h"

namespace ftd {

enum class RoleKind { kPrimary, kBackup };

struct Options {
  RoleKind role = RoleKind::kPrimary;
  // Replication link.
  std::string listen = "0.0.0.0:7788";     // backup: where to accept the primary
  std::string peer;                        // primary: backup's host:port
  std::string tls_ca, tls_cert, tls_key;   // mutual TLS (required unless insecure)
  bool insecure_plaintext = false;
  // Epochs.
  int interval_ms = 100;
  uint32_t max_in_flight = 2;
  int heartbeat_ms = 100;
  int missed_heartbeats = 3;
  int reconnect_ms = 1000;
  // The protected domain.
  std::string hypervisor = "fake";         // fake (in-memory, for tests) | qemu | xen
  uint64_t fake_frames = 4096;
  std::string fake_workload = "mixed";
  uint64_t fake_seed = 1;
  // QEMU (--hypervisor qemu): the same on primary and backup.
  std::string qemu_binary = "/usr/bin/qemu-system-x86_64";
  std::string qemu_kernel, qemu_initrd, qemu_append = "console=ttyS0 quiet panic=-1";
  uint64_t qemu_ram_mb = 256;
  std::string qemu_mac = "52:54:00:f7:5e:01";
  std::string qemu_preload;                // default: beside ftd, ../lib/libftsync_qemu_preload.so
  std::string run_dir = "/run/ftsync";     // sockets, guest RAM file (use tmpfs)
  std::string tap = "ftsync0";             // host network device for the guest's NIC
  std::string console_log;                 // released console output (default RUN_DIR/console.log)
  bool no_net_buffer = false;              // unsafe: guest frames leave before their epoch is safe
  // Xen (--hypervisor xen).
  std::string domain;                      // primary: NAME or DOMID to protect; backup: name when restored
  std::string xen_suspend = "cooperative"; // cooperative (restorable) | pause
  int xen_calibrate = 2;                   // rounds of XenDomain::CalibrateUntrackedWrites
  int xen_suspend_timeout_ms = 10000;      // XenDomainOptions::suspend_timeout_ms
  std::string xen_config;                  // backup: xl config for the restored domain
  std::string net_hook;                    // primary: extra script at the network buffer's setup/teardown
  // Stream.
  std::string delta = "runs";              // off|blocks|runs|auto|hash (CheckpointerOptions::delta)
  int delta_block_size = 64;               // blocks/hash: 64|128|256
  long shadow_memory_mb = 32;              // bound on the primary's shadow copies
  std::string compression = "zstd";        // none|zlib|zstd
  int compression_level = 0;               // 0: the codec's fast default
  bool no_compression = false;             // -u: same as --compression none
  std::string speculation = "history";     // off|eager|history|fill
  int speculation_ticks = 10;              // Speculate() ticks per epoch + 1
  int precopy_rounds = 3;                  // live pre-copy rounds of epoch 0
  bool blackhole = false;                  // primary: checkpoints to /dev/null, acknowledged at once
  // Backup side.
  std::string replica_dir = "/var/lib/ftsync/replica";
  bool promote = true;                     // take over when the primary dies
  bool exit_after_promote = false;         // backup: exit once the promoted guest runs
  std::string reprotect;                   // backup: after a takeover, protect the guest to this HOST:PORT
  // Control.
  std::string control = "/run/ftsync/ftd.sock";
  std::string config;                      // file read before the flags
};

// Parses argv (argv[1] is "primary" or "backup"). On --help, fills *help and
// returns OK with `*help` non-empty.
ftsync::Status ParseOptions(int argc, char** argv, Options* out, std::string* help);

// The --help text: every option with its default.
std::string HelpText();

}  // namespace ftd

#endif  // FTSYNC_FTD_OPTIONS_H_
