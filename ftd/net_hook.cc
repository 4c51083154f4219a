#include "net_hook.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

Status RunHook(const std::string& script, const std::string& phase,
               const std::vector<std::pair<std::string, std::string>>& env) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  for (auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : envs) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string a0 = script, a1 = phase;
  char* argv[] = {a0.data(), a1.data(), nullptr};
  pid_t pid;
  int e = ::posix_spawn(&pid, script.c_str(), nullptr, nullptr, argv, envp.data());
  if (e != 0) return Status(Errc::kIoError, "hook " + script + " " + phase + ": cannot run: " + std::strerror(e));
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return Status::OK();
  std::string why = WIFEXITED(st) ? "exit status " + std::to_string(WEXITSTATUS(st))
                                  : "killed by signal " + std::to_string(WTERMSIG(st));
  return Status(Errc::kIoError, "hook " + script + " " + phase + " failed (" + why + ")");
}

Status NetHook::Run(const std::string& phase) {
  for (const Vif& v : vifs_) {
    ++runs_;
    FTSYNC_RETURN_IF_ERROR(RunHook(script_, phase, {{"vifname", v.vif}, {"IFB", v.ifb}, {"FTSYNC_DOMAIN", domain_}}));
  }
  return Status::OK();
}

Status NetHook::Setup() {
  set_up_ = true;
  return Run("setup");
}

void NetHook::Teardown() {
  if (!set_up_) return;
  set_up_ = false;
  Status s = Run("teardown");
  if (!s.ok() && log_) log_->Log(ftsync::LogLevel::kWarning, s.ToString());
}

}  // namespace ftd
