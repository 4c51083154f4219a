#include "xl_args.h"

#include <cstdlib>

namespace xlft {
using ftsync::Errc;
using ftsync::Status;

namespace {

Status Bad(const std::string& m) { return Status(Errc::kInvalidArgument, m); }

bool ToInt(const std::string& v, long lo, long hi, int* out) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || x < lo || x > hi) return false;
  *out = static_cast<int>(x);
  return true;
}

}  // namespace

std::string UsageText() {
  return "usage: xl-ftsync [options] DOMAIN HOST      protect DOMAIN, its backup on HOST\n"
         "       xl-ftsync receive [options] DOMAIN   (run on HOST by the above) start the backup\n"
         "       xl-ftsync status [options] DOMAIN    state of DOMAIN's ftd on this host\n"
         "       xl-ftsync failover [options] DOMAIN  take over on this (the backup) host now\n"
         "\n"
         "options (as xl remus):\n"
         "  -i MS      checkpoint interval in ms (default 200)\n"
         "  -u         no compression of checkpoints\n"
         "  -s CMD     command that runs the receiver on HOST (default ssh): CMD HOST xl-ftsync receive ...\n"
         "  -e         the receiver exits once it has taken over (default: it waits in the background\n"
         "             on HOST for the death of the taken-over domain)\n"
         "  -N SCRIPT  extra hook: SCRIPT setup|teardown per vif at the network buffer's phases\n"
         "  -F         unsafe mode: allows -b, -n and -d\n"
         "  -b         blackhole: checkpoints to /dev/null, HOST not contacted (needs -F)\n"
         "  -n         no network buffering: output leaves before it is safe (needs -F)\n"
         "  -d         protect a domain with disks without replicating them (needs -F)\n"
         "  -c, -p     COLO: not supported by ftsync\n"
         "ftsync options:\n"
         "  --port N             replication port on HOST (default 7788)\n"
         "  --bind ADDR          receive: address to listen on (default 0.0.0.0)\n"
         "  --run-dir DIR        control sockets and logs (default /run/ftsync)\n"
         "  --replica-dir DIR    receive: the replica (default /var/lib/ftsync/DOMAIN)\n"
         "  --xen-config FILE    receive: xl config of the domain created at takeover\n"
         "  --tls-ca FILE --tls-cert FILE --tls-key FILE   mutual TLS (the same paths on HOST)\n"
         "  --insecure-plaintext replicate without TLS (INSECURE)\n"
         "  --hypervisor NAME    xen (default) or fake (ftd's in-memory domain, for tests)\n"
         "  --ftd PATH           the ftd binary (default: beside xl-ftsync, else on PATH)\n"
         "  --remote-xl-ftsync PATH  xl-ftsync on HOST (default xl-ftsync)\n"
         "  --ftd-arg ARG        pass ARG to ftd (repeatable)\n";
}

ftsync::Result<XlCommand> ParseXlArgs(const std::vector<std::string>& args) {
  XlCommand c;
  size_t i = 1;
  if (i < args.size()) {
    const std::string& v = args[i];
    if (v == "receive") c.verb = Verb::kReceive, ++i;
    else if (v == "status") c.verb = Verb::kStatus, ++i;
    else if (v == "failover") c.verb = Verb::kFailover, ++i;
  }
  std::vector<std::string> pos;
  bool colo = false;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      c.verb = Verb::kHelp;
      return c;
    }
    if (a.rfind("--", 0) == 0 && a.size() > 2) {
      std::string name = a.substr(2), value;
      bool has_value = false;
      if (auto eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
        has_value = true;
      }
      auto need = [&]() -> Status {
        if (has_value) return Status::OK();
        if (i + 1 >= args.size()) return Bad("option --" + name + " needs a value");
        value = args[++i];
        return Status::OK();
      };
      if (name == "insecure-plaintext") {
        c.insecure_plaintext = true;
        continue;
      }
      static const char* kValued[] = {"port", "bind", "run-dir", "replica-dir", "xen-config", "tls-ca",
                                      "tls-cert", "tls-key", "hypervisor", "ftd", "remote-xl-ftsync", "ftd-arg"};
      bool known = false;
      for (const char* k : kValued) known |= name == k;
      if (!known) return Bad("unknown option '--" + name + "' (see xl-ftsync --help)");
      FTSYNC_RETURN_IF_ERROR(need());
      if (name == "port") {
        if (!ToInt(value, 1, 65535, &c.port)) return Bad("--port: '" + value + "' is not a port number (1..65535)");
      } else if (name == "bind") c.bind = value;
      else if (name == "run-dir") c.run_dir = value;
      else if (name == "replica-dir") c.replica_dir = value;
      else if (name == "xen-config") c.xen_config = value;
      else if (name == "tls-ca") c.tls_ca = value;
      else if (name == "tls-cert") c.tls_cert = value;
      else if (name == "tls-key") c.tls_key = value;
      else if (name == "hypervisor") c.hypervisor = value;
      else if (name == "ftd") c.ftd = value;
      else if (name == "remote-xl-ftsync") c.remote_xl_ftsync = value;
      else if (name == "ftd-arg") c.ftd_args.push_back(value);
      continue;
    }
    if (a.size() > 1 && a[0] == '-') {
      for (size_t k = 1; k < a.size(); ++k) {
        char f = a[k];
        if (f == 'i' || f == 's' || f == 'N') {
          std::string value = a.substr(k + 1);
          if (value.empty()) {
            if (i + 1 >= args.size()) return Bad(std::string("option -") + f + " needs a value");
            value = args[++i];
          }
          if (f == 'i' && !ToInt(value, 10, 10000, &c.interval_ms))
            return Bad("-i: '" + value + "' is not an interval in ms (10..10000)");
          if (f == 's') {
            if (value.empty()) return Bad("-s: empty command");
            c.ssh = value;
          }
          if (f == 'N') c.net_hook = value;
          break;
        }
        switch (f) {
          case 'u': c.no_compression = true; break;
          case 'e': c.exit_after_takeover = true; break;
          case 'F': c.unsafe = true; break;
          case 'b': c.blackhole = true; break;
          case 'n': c.no_net_buffer = true; break;
          case 'd': c.no_disk = true; break;
          case 'c':
          case 'p': colo = true; break;
          default: return Bad(std::string("unknown option -") + f + " (see xl-ftsync --help)");
        }
      }
      continue;
    }
    pos.push_back(a);
  }
  if (colo)
    return Bad("-c/-p (COLO) are not supported: ftsync replicates checkpoints Remus-style and has no COLO "
               "mode (no output comparison, no secondary running in step); run without -c/-p");
  if (c.hypervisor != "xen" && c.hypervisor != "fake")
    return Bad("--hypervisor must be xen or fake, not '" + c.hypervisor + "'");
  // The unsafe flags.
  std::string unsafe;
  if (c.blackhole) unsafe += " -b";
  if (c.no_net_buffer) unsafe += " -n";
  if (c.no_disk) unsafe += " -d";
  if (!unsafe.empty() && !c.unsafe)
    return Bad("option(s)" + unsafe + " weaken protection and need -F (unsafe mode): " +
               (c.blackhole ? "-b keeps no backup at all; " : "") +
               (c.no_net_buffer ? "-n lets output leave before the backup has it; " : "") +
               (c.no_disk ? "-d leaves the domain's disks unreplicated; " : "") + "add -F if that is what you want");
  if (!c.net_hook.empty() && c.no_net_buffer)
    return Bad("-N runs a hook at the network buffer's phases, and -n turns the network buffer off");
  // Positional arguments.
  const size_t want = c.verb == Verb::kProtect ? 2 : 1;
  if (pos.size() != want) {
    if (c.verb == Verb::kProtect)
      return Bad(pos.empty() ? "missing DOMAIN and HOST (usage: xl-ftsync [options] DOMAIN HOST)"
                             : pos.size() == 1 ? "missing HOST after DOMAIN '" + pos[0] + "'"
                                               : "too many arguments: expected DOMAIN HOST, got '" + pos[2] + "' too");
    return Bad(pos.empty() ? "missing DOMAIN" : "too many arguments after DOMAIN '" + pos[0] + "'");
  }
  c.domain = pos[0];
  if (c.verb == Verb::kProtect) c.host = pos[1];
  for (char ch : c.domain)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_' && ch != '.')
      return Bad("'" + c.domain + "' is not a domain name or id");
  if (c.verb == Verb::kStatus || c.verb == Verb::kFailover) {
    if (c.blackhole || c.no_net_buffer || c.no_disk || c.unsafe || !c.net_hook.empty() || c.no_compression)
      return Bad(std::string(c.verb == Verb::kStatus ? "status" : "failover") +
                 " takes only DOMAIN and --run-dir/--ftd, not replication flags");
  }
  if (c.verb == Verb::kReceive && (c.blackhole || c.no_net_buffer || !c.net_hook.empty()))
    return Bad("receive: -b, -n and -N are options of the sending side");
  // TLS: explicit files, or plaintext on request.
  bool any_tls = !c.tls_ca.empty() || !c.tls_cert.empty() || !c.tls_key.empty();
  if (c.verb == Verb::kProtect || c.verb == Verb::kReceive) {
    if (c.insecure_plaintext && any_tls) return Bad("--insecure-plaintext and --tls-* exclude each other");
    if (!c.insecure_plaintext && !c.blackhole && (c.tls_ca.empty() || c.tls_cert.empty() || c.tls_key.empty()))
      return Bad("the replication link needs mutual TLS: --tls-ca, --tls-cert and --tls-key (the same paths on "
                 "HOST), or --insecure-plaintext (anyone on the path can read the domain's memory)");
  }
  if (c.replica_dir.empty()) c.replica_dir = "/var/lib/ftsync/" + c.domain;
  return c;
}

std::string ControlPath(const XlCommand& c, bool backup) {
  return c.run_dir + "/xl-" + c.domain + (backup ? "-backup.sock" : "-primary.sock");
}
std::string LogPath(const XlCommand& c, bool backup) {
  return c.run_dir + "/xl-" + c.domain + (backup ? "-backup.log" : "-primary.log");
}

namespace {
void AddTls(const XlCommand& c, std::vector<std::string>* v) {
  if (c.insecure_plaintext) {
    v->push_back("--insecure-plaintext");
  } else if (!c.tls_ca.empty()) {
    v->insert(v->end(), {"--tls-ca", c.tls_ca, "--tls-cert", c.tls_cert, "--tls-key", c.tls_key});
  }
}
}  // namespace

std::vector<std::string> FtdPrimaryArgv(const XlCommand& c, const std::string& ftd) {
  std::vector<std::string> v = {ftd, "primary", "--hypervisor", c.hypervisor, "--interval",
                                std::to_string(c.interval_ms), "--control", ControlPath(c, false),
                                "--run-dir", c.run_dir};
  if (c.hypervisor == "xen") v.insert(v.end(), {"--domain", c.domain});
  if (c.blackhole) v.push_back("--blackhole");
  else v.insert(v.end(), {"--peer", c.host + ":" + std::to_string(c.port)});
  if (!c.blackhole) AddTls(c, &v);
  if (c.no_compression) v.push_back("--no-compression");
  if (c.no_net_buffer) v.push_back("--no-net-buffer");
  if (!c.net_hook.empty()) v.insert(v.end(), {"--net-hook", c.net_hook});
  v.insert(v.end(), c.ftd_args.begin(), c.ftd_args.end());
  return v;
}

std::vector<std::string> FtdBackupArgv(const XlCommand& c, const std::string& ftd) {
  std::vector<std::string> v = {ftd, "backup", "--hypervisor", c.hypervisor, "--listen",
                                c.bind + ":" + std::to_string(c.port), "--control", ControlPath(c, true),
                                "--run-dir", c.run_dir, "--replica-dir", c.replica_dir};
  if (c.hypervisor == "xen") v.insert(v.end(), {"--domain", c.domain});
  if (!c.xen_config.empty()) v.insert(v.end(), {"--xen-config", c.xen_config});
  if (c.exit_after_takeover) v.push_back("--exit-after-promote");
  AddTls(c, &v);
  v.insert(v.end(), c.ftd_args.begin(), c.ftd_args.end());
  return v;
}

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:=,@%+-") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::string ReceiveCommand(const XlCommand& c) {
  std::vector<std::string> w = {c.remote_xl_ftsync, "receive", "--port", std::to_string(c.port),
                                "--run-dir", c.run_dir, "--hypervisor", c.hypervisor};
  if (c.exit_after_takeover) w.push_back("-e");
  if (c.insecure_plaintext) w.push_back("--insecure-plaintext");
  else w.insert(w.end(), {"--tls-ca", c.tls_ca, "--tls-cert", c.tls_cert, "--tls-key", c.tls_key});
  if (!c.ftd.empty()) w.insert(w.end(), {"--ftd", c.ftd});
  w.insert(w.end(), {"--replica-dir", c.replica_dir});
  if (!c.xen_config.empty()) w.insert(w.end(), {"--xen-config", c.xen_config});
  for (const std::string& a : c.ftd_args) w.insert(w.end(), {"--ftd-arg", a});
  w.push_back(c.domain);
  std::string cmd = c.ssh + " " + ShellQuote(c.host);
  for (const std::string& x : w) cmd += " " + ShellQuote(x);
  return cmd;
}

}  // namespace xlft
