#include "options.h"

#include "ftsync/checkpointer.h"

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>

namespace ftd {
namespace {
using ftsync::Errc;
using ftsync::Status;

struct OptionDef {
  const char* name;
  const char* meta;  // nullptr: a flag
  const char* help;
  std::function<std::string(const Options&)> show;
  std::function<bool(Options*, const std::string&)> set;
};

bool ToInt(const std::string& v, long lo, long hi, long* out) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || x < lo || x > hi) return false;
  *out = x;
  return true;
}

template <typename T>
OptionDef IntOpt(const char* name, const char* help, T Options::*field, long lo, long hi) {
  return {name, "N", help, [field](const Options& o) { return std::to_string(o.*field); },
          [field, lo, hi](Options* o, const std::string& v) {
            long x;
            if (!ToInt(v, lo, hi, &x)) return false;
            o->*field = static_cast<T>(x);
            return true;
          }};
}

OptionDef StrOpt(const char* name, const char* meta, const char* help, std::string Options::*field) {
  return {name, meta, help, [field](const Options& o) { return o.*field; },
          [field](Options* o, const std::string& v) {
            o->*field = v;
            return true;
          }};
}

OptionDef FlagOpt(const char* name, const char* help, bool Options::*field, bool value) {
  return {name, nullptr, help, [field, value](const Options& o) { return o.*field == value ? "on" : "off"; },
          [field, value](Options* o, const std::string&) {
            o->*field = value;
            return true;
          }};
}

const std::vector<OptionDef>& Defs() {
  static const std::vector<OptionDef> defs = {
      StrOpt("listen", "HOST:PORT", "backup: address to accept the primary on", &Options::listen),
      StrOpt("peer", "HOST:PORT", "primary: the backup's address (required for primary)", &Options::peer),
      StrOpt("tls-ca", "FILE", "CA certificate that signed the peer's certificate", &Options::tls_ca),
      StrOpt("tls-cert", "FILE", "this host's certificate", &Options::tls_cert),
      StrOpt("tls-key", "FILE", "this host's private key", &Options::tls_key),
      FlagOpt("insecure-plaintext",
              "INSECURE: replicate without TLS; anyone who can reach the port can read the VM's memory "
              "and write into the replica",
              &Options::insecure_plaintext, true),
      IntOpt("interval", "epoch length in ms (10..10000): shorter = less output latency, more overhead",
             &Options::interval_ms, 10, 10000),
      IntOpt("max-in-flight", "epochs sent but not yet acknowledged before the primary waits (1..64)",
             &Options::max_in_flight, 1, 64),
      IntOpt("heartbeat", "heartbeat period in ms, both directions (10..10000)", &Options::heartbeat_ms, 10, 10000),
      IntOpt("missed-heartbeats", "heartbeat periods of silence before the peer is declared dead (1..100)",
             &Options::missed_heartbeats, 1, 100),
      IntOpt("reconnect", "primary: ms between attempts to reach a lost backup (10..600000)",
             &Options::reconnect_ms, 10, 600000),
      StrOpt("hypervisor", "NAME", "fake (in-memory domain, for tests), qemu or xen", &Options::hypervisor),
      IntOpt("fake-frames", "fake: guest frames of 4 KiB", &Options::fake_frames, 1, 1L << 30),
      StrOpt("fake-workload", "NAME", "fake: sequential|hot|sparse|scribble|zero|mixed", &Options::fake_workload),
      IntOpt("fake-seed", "fake: workload seed", &Options::fake_seed, 0, 1L << 62),
      StrOpt("qemu-binary", "PATH", "qemu: the emulator", &Options::qemu_binary),
      StrOpt("qemu-kernel", "FILE", "qemu: guest kernel (-kernel)", &Options::qemu_kernel),
      StrOpt("qemu-initrd", "FILE", "qemu: guest initramfs (-initrd)", &Options::qemu_initrd),
      StrOpt("qemu-append", "ARGS", "qemu: guest kernel command line", &Options::qemu_append),
      IntOpt("qemu-ram-mb", "qemu: guest RAM in MiB", &Options::qemu_ram_mb, 16, 1L << 20),
      StrOpt("qemu-mac", "MAC", "qemu: the guest NIC's MAC (the same on both hosts)", &Options::qemu_mac),
      StrOpt("qemu-preload", "FILE", "qemu: dirty-tracking preload library (default: beside ftd)",
             &Options::qemu_preload),
      StrOpt("run-dir", "DIR", "sockets and the guest RAM file (tmpfs recommended)", &Options::run_dir),
      StrOpt("tap", "NAME", "qemu: host TAP device the guest's NIC is bridged to", &Options::tap),
      StrOpt("console-log", "FILE", "qemu: where released console output goes (default RUN_DIR/console.log)",
             &Options::console_log),
      FlagOpt("no-net-buffer",
              "UNSAFE: release the guest's network frames at once (a takeover may then repeat output)",
              &Options::no_net_buffer, true),
      StrOpt("domain", "NAME|DOMID",
             "xen: primary: the running domain to protect; backup: the name the restored domain gets",
             &Options::domain),
      StrOpt("xen-suspend", "MODE",
             "xen: how each checkpoint stops the domain: cooperative (the guest's own suspend, fast resume; "
             "needed for a takeover) or pause (cheaper, but the replica cannot be restored)",
             &Options::xen_suspend),
      IntOpt("xen-calibrate", "xen: rounds that find frames Xen writes without logging them (0..10)",
             &Options::xen_calibrate, 0, 10),
      IntOpt("xen-suspend-timeout", "xen: milliseconds a guest may take to suspend cooperatively "
             "(1000..120000); then the checkpoint fails",
             &Options::xen_suspend_timeout_ms, 1000, 120000),
      StrOpt("xen-config", "FILE", "xen: backup: xl configuration for the domain restored at takeover",
             &Options::xen_config),
      StrOpt("net-hook", "SCRIPT",
             "primary: run 'SCRIPT setup|teardown' per interface (env vifname, IFB, FTSYNC_DOMAIN) after the "
             "network buffer is set up and before it is removed",
             &Options::net_hook),
      StrOpt("delta", "MODE",
             "sub-page deltas against the last sent copy: off (whole pages), blocks, runs (exact byte runs), "
             "auto, or hash (per-block hashes instead of copies: less memory, more CPU)",
             &Options::delta),
      IntOpt("delta-block-size", "blocks/hash: block size in bytes (64, 128 or 256)", &Options::delta_block_size,
             64, 256),
      IntOpt("shadow-memory", "MiB the primary may spend on the last sent copies of pages (1..65536)",
             &Options::shadow_memory_mb, 1, 65536),
      StrOpt("compression", "CODEC", "compress page and delta records: none, zlib or zstd", &Options::compression),
      IntOpt("compression-level", "zlib 1..9, zstd 1..19; 0 = the codec's fast default",
             &Options::compression_level, 0, 19),
      FlagOpt("no-compression", "send records uncompressed (the same as --compression none; xl-ftsync -u)",
              &Options::no_compression, true),
      StrOpt("speculation", "POLICY",
             "send likely-final pages during the epoch: off, eager (every dirty page, a reference), history "
             "(adaptive, bounded to 1.2x the bytes) or fill (history, spending the rest of the budget late); "
             "on xen, which can only peek, a page sent ahead is resent at the checkpoint only if it changed "
             "(needs --delta runs, blocks or auto)",
             &Options::speculation),
      IntOpt("speculation-ticks", "speculation: ticks per epoch (2..100); ticks-1 speculative sends per epoch",
             &Options::speculation_ticks, 2, 100),
      IntOpt("precopy-rounds",
             "primary: live rounds of the first epoch after its full pass, each resending what the guest "
             "wrote meanwhile (0..10); 0 sends the rest at the first pause",
             &Options::precopy_rounds, 0, 10),
      FlagOpt("blackhole",
              "primary: checkpoints go to /dev/null and are acknowledged at once (no backup, no failover; "
              "for measurement and debugging)",
              &Options::blackhole, true),
      StrOpt("replica-dir", "DIR", "backup: replica directory (memory image, state)", &Options::replica_dir),
      FlagOpt("no-promote", "backup: keep the replica but never take over", &Options::promote, false),
      FlagOpt("exit-after-promote",
              "backup: exit once the taken-over guest runs (default: stay and watch it until it ends)",
              &Options::exit_after_promote, true),
      StrOpt("reprotect", "HOST:PORT",
             "backup (qemu, fake): after a takeover, protect the guest again, to a backup at HOST:PORT "
             "(retried every --reconnect ms until one answers); `ftd ctl protect HOST:PORT` does the same "
             "on demand",
             &Options::reprotect),
      StrOpt("control", "PATH", "unix socket for status, stats, failover, protect, stop", &Options::control),
      StrOpt("config", "FILE", "read options from FILE (name = value lines) before the command line",
             &Options::config),
  };
  return defs;
}

const OptionDef* Find(const std::string& name) {
  for (const OptionDef& d : Defs())
    if (name == d.name) return &d;
  return nullptr;
}

Status Apply(Options* o, const std::string& name, const std::string* value, const std::string& where) {
  const OptionDef* d = Find(name);
  if (!d) return Status(Errc::kInvalidArgument, where + ": unknown option '" + name + "' (see ftd --help)");
  if (!d->meta) return d->set(o, ""), Status::OK();
  if (!value) return Status(Errc::kInvalidArgument, where + ": option '" + name + "' needs a value");
  if (!d->set(o, *value))
    return Status(Errc::kInvalidArgument, where + ": bad value '" + *value + "' for '" + name + "'");
  return Status::OK();
}

Status ReadConfig(const std::string& path, Options* o) {
  std::ifstream f(path);
  if (!f) return Status(Errc::kNotFound, "cannot read configuration file " + path);
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    auto trim = [](std::string s) {
      size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t\r");
      return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
    };
    line = trim(line);
    if (line.empty()) continue;
    auto eq = line.find('=');
    std::string name = trim(line.substr(0, eq));
    std::string where = path + ":" + std::to_string(n);
    if (eq == std::string::npos) {
      FTSYNC_RETURN_IF_ERROR(Apply(o, name, nullptr, where));
    } else {
      std::string value = trim(line.substr(eq + 1));
      FTSYNC_RETURN_IF_ERROR(Apply(o, name, &value, where));
    }
  }
  return Status::OK();
}

}  // namespace

std::string HelpText() {
  Options d;
  std::ostringstream s;
  s << "usage: ftd primary --peer HOST:PORT [options]\n"
       "       ftd primary --blackhole [options]\n"
       "       ftd backup [--listen HOST:PORT] [options]\n"
       "       ftd ctl [--control PATH] status|stats|stats-json|failover|protect HOST:PORT|stop\n\n"
       "ftd protects a virtual machine: the primary checkpoints it every epoch to the\n"
       "backup, which keeps a replica and takes over when the primary dies.\n\n"
       "options (default in brackets; the same names work in a --config file):\n";
  for (const OptionDef& o : Defs()) {
    std::string left = std::string("  --") + o.name + (o.meta ? std::string(" ") + o.meta : "");
    if (left.size() < 30) left.resize(30, ' ');
    std::string def = o.show(d);
    s << left << " " << o.help << " [" << (def.empty() ? "none" : def) << "]\n";
  }
  return s.str();
}

Status ParseOptions(int argc, char** argv, Options* out, std::string* help) {
  Options o;
  std::vector<std::pair<std::string, const std::string*>> flags;
  std::vector<std::string> values;
  values.reserve(static_cast<size_t>(argc));
  int i = 1;
  if (argc > 1 && std::string(argv[1]) != "--help" && std::string(argv[1]) != "-h") {
    std::string role = argv[1];
    if (role == "primary") o.role = RoleKind::kPrimary;
    else if (role == "backup") o.role = RoleKind::kBackup;
    else return Status(Errc::kInvalidArgument, "first argument must be 'primary', 'backup' or 'ctl', not '" + role + "'");
    i = 2;
  }
  std::vector<std::pair<std::string, std::string>> cli;  // name, value ("\x01" = none)
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      *help = HelpText();
      return Status::OK();
    }
    if (a.rfind("--", 0) != 0) return Status(Errc::kInvalidArgument, "unexpected argument '" + a + "'");
    std::string name = a.substr(2), value = "\x01";
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (!Find(name)) return Status(Errc::kInvalidArgument, "unknown option '--" + name + "' (see ftd --help)");
    if (eq != std::string::npos) {
    } else if (const OptionDef* d = Find(name); d && d->meta) {
      if (i + 1 >= argc) return Status(Errc::kInvalidArgument, "option --" + name + " needs a value");
      value = argv[++i];
    }
    cli.emplace_back(name, value);
  }
  for (auto& [name, value] : cli)
    if (name == "config") o.config = value;
  if (!o.config.empty()) FTSYNC_RETURN_IF_ERROR(ReadConfig(o.config, &o));
  for (auto& [name, value] : cli)
    FTSYNC_RETURN_IF_ERROR(Apply(&o, name, value == "\x01" ? nullptr : &value, "command line"));
  if (argc < 2) return Status(Errc::kInvalidArgument, "missing role: ftd primary|backup|ctl (see ftd --help)");
  if (o.role == RoleKind::kPrimary && o.peer.empty() && !o.blackhole)
    return Status(Errc::kInvalidArgument, "primary needs --peer HOST:PORT (the backup), or --blackhole");
  if (o.blackhole && o.role != RoleKind::kPrimary)
    return Status(Errc::kInvalidArgument, "--blackhole is a primary option");
  if (!o.reprotect.empty()) {
    if (o.role != RoleKind::kBackup) return Status(Errc::kInvalidArgument, "--reprotect is a backup option");
    if (o.hypervisor == "xen")
      return Status(Errc::kInvalidArgument,
                    "--reprotect: on xen the restored domain is an ordinary domain; protect it with xl-ftsync "
                    "or ftd primary --domain");
    if (o.exit_after_promote)
      return Status(Errc::kInvalidArgument, "--reprotect contradicts --exit-after-promote");
    if (o.reprotect.rfind(':') == std::string::npos)
      return Status(Errc::kInvalidArgument, "--reprotect: '" + o.reprotect + "' is not HOST:PORT");
  }
  if (o.hypervisor != "fake" && o.hypervisor != "qemu" && o.hypervisor != "xen")
    return Status(Errc::kInvalidArgument, "--hypervisor must be fake, qemu or xen, not '" + o.hypervisor + "'");
  if (o.hypervisor == "xen" && o.role == RoleKind::kPrimary && o.domain.empty())
    return Status(Errc::kInvalidArgument, "--hypervisor xen needs --domain NAME|DOMID (the domain to protect)");
  if (o.xen_suspend != "cooperative" && o.xen_suspend != "pause")
    return Status(Errc::kInvalidArgument, "--xen-suspend must be cooperative or pause, not '" + o.xen_suspend + "'");
  if (!o.net_hook.empty() && o.hypervisor != "xen")
    return Status(Errc::kInvalidArgument, "--net-hook runs at the Xen network buffer's phases: it needs --hypervisor xen");
  if (!o.net_hook.empty() && o.no_net_buffer)
    return Status(Errc::kInvalidArgument,
                  "--net-hook runs at the network buffer's phases, and --no-net-buffer turns the buffer off");
  if (auto d = ftsync::ParseDeltaMode(o.delta); !d.ok())
    return Status(Errc::kInvalidArgument, "--delta: " + d.status().context());
  if (o.delta_block_size != 64 && o.delta_block_size != 128 && o.delta_block_size != 256)
    return Status(Errc::kInvalidArgument,
                  "--delta-block-size must be 64, 128 or 256, not " + std::to_string(o.delta_block_size));
  if (auto c = ftsync::ParseCompression(o.compression); !c.ok())
    return Status(Errc::kInvalidArgument, "--compression: " + c.status().context());
  if (auto sp = ftsync::ParseSpeculation(o.speculation); !sp.ok())
    return Status(Errc::kInvalidArgument, "--speculation: " + sp.status().context());
  if (o.no_compression && o.compression != "none" && o.compression != "zstd")
    return Status(Errc::kInvalidArgument, "--no-compression contradicts --compression " + o.compression);
  if (!o.insecure_plaintext && !o.blackhole && (o.tls_ca.empty() || o.tls_cert.empty() || o.tls_key.empty()))
    return Status(Errc::kInvalidArgument,
                  "TLS needs --tls-ca, --tls-cert and --tls-key (or --insecure-plaintext, which is insecure)");
  *out = o;
  return Status::OK();
}

}  // namespace ftd
