// xl-ftsync: `xl remus` for ftsync. Protects a running Xen domain with a
// backup on HOST by driving ftd: starts `xl-ftsync receive` on HOST through
// -s CMD (ssh), which starts `ftd backup` there in the background, then
// execs `ftd primary` here. See xl-ftsync.1.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "xl_args.h"

namespace {
using xlft::XlCommand;

int Fail(const std::string& m, int code = 1) {
  std::fprintf(stderr, "xl-ftsync: %s\n", m.c_str());
  return code;
}

// Runs `cmd` in /bin/sh; returns its exit status and output (stdout+stderr).
int Run(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
    if (out) out->append(buf, n);
  int st = ::pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string FindFtd(const XlCommand& c) {
  if (!c.ftd.empty()) return c.ftd;
  if (const char* e = std::getenv("FTD"); e && *e) return e;
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    auto beside = std::filesystem::path(self).parent_path() / "ftd";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  return "ftd";
}

std::string Ctl(const std::string& ftd, const std::string& sock, const std::string& cmd, int* rc) {
  std::string out;
  *rc = Run(xlft::ShellQuote(ftd) + " ctl --control " + xlft::ShellQuote(sock) + " " + cmd, &out);
  return Trim(out);
}

// Refuses a domain with disks unless -d (ftsync does not replicate disks).
int CheckXenDomain(const XlCommand& c) {
  std::string out;
  if (Run("xl domid " + xlft::ShellQuote(c.domain), &out) != 0)
    return Fail("no Xen domain '" + c.domain + "' (xl domid: " + Trim(out) + ")");
  out.clear();
  if (Run("xl block-list " + xlft::ShellQuote(c.domain), &out) != 0)
    return Fail("cannot list the disks of '" + c.domain + "' (xl block-list: " + Trim(out) + ")");
  std::istringstream in(out);
  std::string line, vdevs;
  int disks = 0;
  for (bool header = true; std::getline(in, line); header = false) {
    if (header || Trim(line).empty()) continue;
    ++disks;
    vdevs += (vdevs.empty() ? "" : ", ") + line.substr(0, line.find(' '));
  }
  if (disks > 0 && !c.no_disk)
    return Fail("domain '" + c.domain + "' has " + std::to_string(disks) + " disk(s) (vdev " + vdevs +
                    "): ftsync does not replicate disks, so after a takeover the domain would run on disks that do "
                    "not match its memory. Detach them, or use -F -d to protect it without its disks (UNSAFE)",
                3);
  if (disks > 0)
    std::fprintf(stderr, "xl-ftsync: WARNING: -d: %d disk(s) of '%s' are NOT replicated\n", disks, c.domain.c_str());
  return 0;
}

int Protect(const XlCommand& c) {
  const std::string ftd = FindFtd(c);
  if (c.hypervisor == "xen")
    if (int r = CheckXenDomain(c)) return r;
  std::error_code ec;
  std::filesystem::create_directories(c.run_dir, ec);
  if (!c.blackhole) {
    std::string cmd = xlft::ReceiveCommand(c), out;
    std::fprintf(stderr, "xl-ftsync: starting the receiver: %s\n", cmd.c_str());
    int rc = Run(cmd, &out);
    if (!out.empty()) std::fprintf(stderr, "%s", out.c_str());
    if (rc != 0)
      return Fail("the receiver did not start on " + c.host + " ('" + c.ssh + "' exited with status " +
                  std::to_string(rc) + ")");
  } else {
    std::fprintf(stderr, "xl-ftsync: -b: checkpoints go to /dev/null; %s is not contacted, there is no backup\n",
                 c.host.c_str());
  }
  std::vector<std::string> argv = xlft::FtdPrimaryArgv(c, ftd);
  std::string shown;
  for (auto& a : argv) shown += " " + xlft::ShellQuote(a);
  std::fprintf(stderr, "xl-ftsync: protecting %s:%s\n", c.domain.c_str(), shown.c_str());
  std::vector<char*> av;
  for (auto& a : argv) av.push_back(a.data());
  av.push_back(nullptr);
  ::execvp(av[0], av.data());
  return Fail("cannot run " + ftd + ": " + std::strerror(errno) + " (give --ftd PATH)", 127);
}

std::string Tail(const std::string& path, size_t n) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  std::string t = s.str();
  return t.size() > n ? t.substr(t.size() - n) : t;
}

int Receive(const XlCommand& c) {
  const std::string ftd = FindFtd(c);
  const std::string sock = xlft::ControlPath(c, true), log = xlft::LogPath(c, true);
  std::error_code ec;
  std::filesystem::create_directories(c.run_dir, ec);
  if (ec) return Fail("run directory " + c.run_dir + ": " + ec.message());
  int rc;
  std::string st = Ctl(ftd, sock, "status", &rc);
  if (rc == 0) return Fail("a receiver for '" + c.domain + "' already runs here (" + st + ")");
  std::vector<std::string> argv = xlft::FtdBackupArgv(c, ftd);
  pid_t pid = ::fork();
  if (pid < 0) return Fail(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // The backup outlives this command (and the ssh session that ran it).
    ::setsid();
    ::signal(SIGHUP, SIG_IGN);
    // Nothing of the caller's (its ssh session's pipes) may stay open here,
    // or the caller would wait for this daemon's end.
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out < 0) out = ::open("/dev/null", O_WRONLY);
    if (in >= 0) ::dup2(in, 0);
    if (out >= 0) ::dup2(out, 1), ::dup2(out, 2);
    for (int fd = 3; fd < 1024; ++fd) ::close(fd);
    std::vector<char*> av;
    for (auto& a : argv) av.push_back(a.data());
    av.push_back(nullptr);
    ::execvp(av[0], av.data());
    std::fprintf(stderr, "xl-ftsync receive: cannot run %s: %s\n", ftd.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    int wst;
    if (::waitpid(pid, &wst, WNOHANG) == pid)
      return Fail("receive: ftd backup exited at once (" +
                  (WIFEXITED(wst) ? "status " + std::to_string(WEXITSTATUS(wst)) : std::string("killed")) +
                  "); its log " + log + " ends:\n" + Tail(log, 800));
    st = Ctl(ftd, sock, "status", &rc);
    if (rc == 0 && st.find("state=waiting") != std::string::npos) {
      std::printf("xl-ftsync receive: backup of '%s' ready on %s:%d (ftd pid %d, log %s, control %s)%s\n",
                  c.domain.c_str(), c.bind.c_str(), c.port, static_cast<int>(pid), log.c_str(), sock.c_str(),
                  c.exit_after_takeover ? "; it exits after a takeover (-e)"
                                        : "; after a takeover it waits in the background for the domain's death");
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ::kill(pid, SIGTERM);
  return Fail("receive: ftd backup did not become ready in 30 s; its log " + log + " ends:\n" + Tail(log, 800));
}

int Status(const XlCommand& c) {
  const std::string ftd = FindFtd(c);
  bool any = false;
  for (bool backup : {false, true}) {
    int rc;
    std::string st = Ctl(ftd, xlft::ControlPath(c, backup), "status", &rc);
    if (rc != 0) continue;
    any = true;
    std::printf("%s: %s\n", backup ? "backup" : "primary", st.c_str());
  }
  if (!any)
    return Fail("'" + c.domain + "' is not protected on this host (no ftd answers at " + xlft::ControlPath(c, false) +
                " or " + xlft::ControlPath(c, true) + ")");
  return 0;
}

int Failover(const XlCommand& c) {
  const std::string ftd = FindFtd(c);
  int rc;
  std::string r = Ctl(ftd, xlft::ControlPath(c, true), "failover", &rc);
  if (rc != 0 && r.find("cannot reach") != std::string::npos)
    return Fail("no backup of '" + c.domain + "' on this host (" + r + "); failover runs on the backup's host");
  std::printf("%s\n", r.c_str());
  return rc == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  auto c = xlft::ParseXlArgs(args);
  if (!c.ok()) {
    std::fprintf(stderr, "xl-ftsync: %s\n", c.status().context().c_str());
    return 2;
  }
  switch (c->verb) {
    case xlft::Verb::kHelp: std::fputs(xlft::UsageText().c_str(), stdout); return 0;
    case xlft::Verb::kProtect: return Protect(*c);
    case xlft::Verb::kReceive: return Receive(*c);
    case xlft::Verb::kStatus: return Status(*c);
    case xlft::Verb::kFailover: return Failover(*c);
  }
  return 2;
}
