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
  std::string hypervisor = "fake";         // fake (in-memory, for tests) | qemu
  uint64_t fake_frames = 4096;
  std::string fake_workload = "mixed";
  uint64_t fake_seed = 1;
  // Backup side.
  std::string replica_dir = "/var/lib/ftsync/replica";
  bool promote = true;                     // take over when the primary dies
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
