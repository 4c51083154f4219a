// xl-ftsync's command line: parsing, validation (every refusal says why),
// and the ftd command lines it turns into. xl-ftsync drives ftd: the
// sender execs `ftd primary`, `receive` starts `ftd backup`, status and
// failover go through `ftd ctl`. See xl-ftsync.1.
#ifndef FTSYNC_XL_PLUGIN_XL_ARGS_H_
#define FTSYNC_XL_PLUGIN_XL_ARGS_H_

#include <string>
#include <vector>

#include "ftsync/status.h"

namespace xlft {

enum class Verb { kProtect, kReceive, kStatus, kFailover, kHelp };

struct XlCommand {
  Verb verb = Verb::kProtect;
  std::string domain, host;
  // xl remus's flags.
  int interval_ms = 200;        // -i
  bool no_compression = false;  // -u
  std::string ssh = "ssh";      // -s
  bool exit_after_takeover = false;  // -e
  std::string net_hook;         // -N
  bool unsafe = false;          // -F
  bool blackhole = false;       // -b
  bool no_net_buffer = false;   // -n
  bool no_disk = false;         // -d
  // ftsync's long options.
  int port = 7788;
  std::string bind = "0.0.0.0";
  std::string run_dir = "/run/ftsync";
  std::string replica_dir;      // receive; default /var/lib/ftsync/DOMAIN
  std::string hypervisor = "xen";
  std::string ftd;              // default: beside xl-ftsync, else `ftd` on PATH
  std::string remote_xl_ftsync = "xl-ftsync";
  std::string xen_config;       // receive: xl config of the restored domain
  bool insecure_plaintext = false;
  std::string tls_ca, tls_cert, tls_key;
  std::vector<std::string> ftd_args;  // --ftd-arg, passed to ftd as they are
};

// Parses argv (argv[0] is the program). Errors are one line, for the user.
ftsync::Result<XlCommand> ParseXlArgs(const std::vector<std::string>& args);

std::string UsageText();

// Control socket and log of DOMAIN's ftd in `run_dir`.
std::string ControlPath(const XlCommand& c, bool backup);
std::string LogPath(const XlCommand& c, bool backup);

// `ftd primary ...` for the sender (argv[0] = the ftd binary).
std::vector<std::string> FtdPrimaryArgv(const XlCommand& c, const std::string& ftd);
// `ftd backup ...` for `xl-ftsync receive`.
std::vector<std::string> FtdBackupArgv(const XlCommand& c, const std::string& ftd);
// The shell command that starts the receiver: `SSH HOST xl-ftsync receive ...`.
std::string ReceiveCommand(const XlCommand& c);

// Quotes `s` for /bin/sh when it has anything but [A-Za-z0-9_./:=,@%+-].
std::string ShellQuote(const std::string& s);

}  // namespace xlft

#endif  // FTSYNC_XL_PLUGIN_XL_ARGS_H_
