// ftsync: failover on Xen (RestoreXenDomainFromReplica, contract in xen.h):
// replica -> standard Xen save image -> `xl restore`.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ftsync/replica.h"
#include "ftsync/xen.h"
#include "xen/migv2_writer.h"
#include "xen/xen_state.h"

extern char** environ;

namespace ftsync {
namespace {

// Runs argv (searched in PATH) with stdin from /dev/null and stdout+stderr
// into `output`; returns the exit status (or -1 with errno context).
Result<int> RunCapture(const std::vector<std::string>& argv, std::string* output) {
  char tmpl[] = "/tmp/ftsync-xl-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) return Status::FromErrno(errno, "mkstemp for xl output");
  ::unlink(tmpl);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fd, 1);
  posix_spawn_file_actions_adddup2(&fa, fd, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    ::close(fd);
    return Status::FromErrno(rc, "spawn " + argv[0]);
  }
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  output->clear();
  ::lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && output->size() < 65536) output->append(buf, n);
  ::close(fd);
  while (!output->empty() && (output->back() == '\n' || output->back() == ' ')) output->pop_back();
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
}

// The xl config text with its `name = ...` line replaced (or added).
std::string ReplaceName(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line, out;
  bool done = false;
  while (std::getline(in, line)) {
    size_t i = line.find_first_not_of(" \t");
    if (!done && i != std::string::npos && line.compare(i, 4, "name") == 0) {
      size_t j = line.find_first_not_of(" \t", i + 4);
      if (j != std::string::npos && line[j] == '=') {
        out += "name = \"" + name + "\"\n";
        done = true;
        continue;
      }
    }
    out += line + "\n";
  }
  if (!done) out = "name = \"" + name + "\"\n" + out;
  return out;
}

}  // namespace

Result<uint32_t> RestoreXenDomainFromReplica(const std::string& replica_dir,
                                             const XenRestoreOptions& options) {
  const std::string what = "xen restore from " + replica_dir;
  if (options.name.empty() || options.name.find_first_of("\"\n\\") != std::string::npos)
    return Status(Errc::kInvalidArgument, what + ": bad domain name '" + options.name + "'");
  struct stat sb;
  if (::stat(replica_dir.c_str(), &sb) != 0)
    return Status::FromErrno(errno, what + ": replica directory");
  auto rep = ReplicaImage::Open(replica_dir);
  if (!rep.ok()) return rep.status().Annotate(what);
  auto last = (*rep)->LastComplete();
  if (!last) return Status(Errc::kNotFound, what + ": the replica has no complete epoch");
  auto blob = (*rep)->ReadState();
  if (!blob.ok()) return blob.status().Annotate(what);
  auto st = xen::DecodeXenState(*blob);
  if (!st.ok()) return st.status().Annotate(what + ": state.bin of epoch " + std::to_string(last->epoch));
  if (!(st->flags & xen::XenSavedState::kCooperative))
    return Status(Errc::kFailedPrecondition,
                  what + ": epoch " + std::to_string(last->epoch) +
                      " was checkpointed with xc_domain_pause (XenSuspend::kPause); a PV-aware "
                      "guest restored from it cannot run (its event channels and timers live in "
                      "the hypervisor). Replicate with XenSuspend::kCooperative");
  const uint64_t frames = xen::LayoutFrames(st->layout);
  if (last->page_size != 4096 || last->frame_count != frames)
    return Status(Errc::kCorruption, what + ": memory.img holds " + std::to_string(last->frame_count) +
                                         " frames of " + std::to_string(last->page_size) +
                                         " bytes; the saved layout has " + std::to_string(frames) +
                                         " frames of 4096");

  std::ifstream cf(options.xl_config);
  if (!cf) return Status(Errc::kNotFound, what + ": cannot read xl config " + options.xl_config);
  std::stringstream cs;
  cs << cf.rdbuf();
  const std::string config = ReplaceName(cs.str(), options.name);

  std::string out;
  auto exists = RunCapture({"xl", "domid", options.name}, &out);
  if (!exists.ok()) return exists.status().Annotate(what + " (is xl installed?)");
  if (*exists == 0)
    return Status(Errc::kFailedPrecondition,
                  what + ": a domain named " + options.name + " already exists (domid " + out + ")");

  // The memory image, read-only.
  const std::string mem_path = (*rep)->memory_path();
  int mfd = ::open(mem_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (mfd < 0) return Status::FromErrno(errno, what + ": open " + mem_path);
  const size_t bytes = static_cast<size_t>(frames) * 4096;
  void* mem = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, mfd, 0);
  ::close(mfd);
  if (mem == MAP_FAILED) return Status::FromErrno(errno, what + ": mmap " + mem_path);

  // The image goes to `xl restore` through a pipe (xl reads it as
  // /proc/self/fd/0, as `xl migrate-receive` reads a stream): no disk space
  // needed next to the replica.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    ::munmap(mem, bytes);
    return Status::FromErrno(errno, what + ": pipe");
  }
  char tmpl[] = "/tmp/ftsync-xl-restore-XXXXXX";
  int ofd = ::mkstemp(tmpl);
  if (ofd >= 0) ::unlink(tmpl);
  std::vector<std::string> argv = {"xl", "restore"};
  if (options.paused) argv.push_back("-p");
  argv.push_back("/proc/self/fd/0");  // devtmpfs has no /dev/stdin
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[0], 0);
  if (ofd >= 0) {
    posix_spawn_file_actions_adddup2(&fa, ofd, 1);
    posix_spawn_file_actions_adddup2(&fa, ofd, 2);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int sp = posix_spawnp(&pid, "xl", &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(p[0]);
  if (sp != 0) {
    ::close(p[1]);
    if (ofd >= 0) ::close(ofd);
    ::munmap(mem, bytes);
    return Status::FromErrno(sp, what + ": spawn xl restore");
  }
  // A reader that quits early must give EPIPE here, not kill the caller.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  xen::ByteWriter writer = [&](const void* d, size_t n) -> Status {
    const uint8_t* b = static_cast<const uint8_t*>(d);
    while (n) {
      ssize_t w = ::write(p[1], b, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno(errno, "write the save image to xl restore");
      }
      b += w;
      n -= static_cast<size_t>(w);
    }
    return Status::OK();
  };
  xen::MigV2Counts counts;
  Status ws = xen::WriteXlSaveImage(writer, *st, static_cast<const uint8_t*>(mem), config, &counts);
  ::close(p[1]);
  ::munmap(mem, bytes);
  int ws_status = 0;
  while (::waitpid(pid, &ws_status, 0) < 0 && errno == EINTR) {
  }
  timespec zero{0, 0};
  while (sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  out.clear();
  if (ofd >= 0) {
    ::lseek(ofd, 0, SEEK_SET);
    char buf[4096];
    ssize_t n;
    while ((n = ::read(ofd, buf, sizeof buf)) > 0 && out.size() < 65536) out.append(buf, n);
    ::close(ofd);
    while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  }
  const int rc = WIFEXITED(ws_status) ? WEXITSTATUS(ws_status) : 128 + WTERMSIG(ws_status);
  if (rc != 0)
    return Status(Errc::kIoError, what + ": xl restore exited " + std::to_string(rc) + ": " + out +
                                      (ws.ok() ? "" : " (writing the image: " + ws.ToString() + ")"));
  if (!ws.ok()) return ws.Annotate(what);
  std::string idout;
  auto idrc = RunCapture({"xl", "domid", options.name}, &idout);
  if (!idrc.ok()) return idrc.status().Annotate(what);
  char* end = nullptr;
  unsigned long id = std::strtoul(idout.c_str(), &end, 10);
  if (*idrc != 0 || idout.empty() || (end && *end))
    return Status(Errc::kIoError, what + ": xl restore succeeded but `xl domid " + options.name +
                                      "` says: " + idout);
  return static_cast<uint32_t>(id);
}

}  // namespace ftsync
