// ftsync: QemuProcess, a QEMU started by this process with the preload
// library, and its start-up handshake (see the diagram in ftsync/qemu.h).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ftsync/qemu.h"
#include "qemu/qemu_launch.h"
#include "qemu/qemu_sys.h"
#include "util/clock.h"

extern char** environ;

namespace ftsync {

using internal::DeadlineNs;
using internal::DescribeWaitStatus;
using internal::MakePipe;
using internal::MonotonicNs;
using internal::RemainingMs;
using internal::UniqueFd;

namespace {

// The descriptor number the preload finds its report channel on.
constexpr int kReportFdInChild = 3;
// After QMP answers, how long the preload's "ram" line may still be in
// flight. QEMU maps guest RAM before its main loop serves QMP commands, so
// this only covers scheduling delays.
constexpr int kReportGraceMs = 1000;
// Child descriptors are moved above this before fork, so that the dup2()s
// onto 0..3 in the child never clobber one another.
constexpr int kHighFd = 10;

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

bool StartsWith(const std::string& s, const char* prefix) {
  return s.compare(0, std::strlen(prefix), prefix) == 0;
}

Status MoveHigh(UniqueFd* fd) {
  int n = fcntl(fd->get(), F_DUPFD_CLOEXEC, kHighFd);
  if (n < 0) return Status::FromErrno(errno, "fcntl(F_DUPFD_CLOEXEC)");
  fd->Reset(n);
  return Status::OK();
}

std::vector<char*> CStrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<std::unique_ptr<QemuProcess>> QemuProcess::Launch(const QemuLaunch& launch, Logger* logger) {
  return LaunchArgv(launch, BuildQemuArgv(launch), logger);
}

Result<std::unique_ptr<QemuProcess>> QemuProcess::LaunchArgv(const QemuLaunch& launch,
                                                             std::vector<std::string> argv,
                                                             Logger* logger) {
  FTSYNC_RETURN_IF_ERROR(internal::CheckLaunch(launch));
  if (argv.empty()) return Status(Errc::kInvalidArgument, "empty QEMU command line");
  std::unique_ptr<QemuProcess> p(new QemuProcess);
  p->launch_ = launch;
  p->logger_ = logger != nullptr ? logger : NullLogger();
  Status s = p->Start(std::move(argv));
  if (!s.ok()) return s;  // the destructor kills and reaps what was started
  return p;
}

QemuProcess::~QemuProcess() {
  qmp_.reset();
  KillAndReap();
}

void QemuProcess::KillAndReap() {
  if (pid_ <= 0 || reaped_) return;
  kill(pid_, SIGKILL);
  int st;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  wait_status_ = st;
  // QEMU removes its socket only when it exits by itself.
  struct stat sst;
  if (lstat(launch_.qmp_socket.c_str(), &sst) == 0 && S_ISSOCK(sst.st_mode)) {
    unlink(launch_.qmp_socket.c_str());
  }
}

Status QemuProcess::Start(std::vector<std::string> argv) {
  Result<std::string> ram = internal::PrepareRamFile(launch_);
  if (!ram.ok()) return ram.status();

  struct stat st;
  if (lstat(launch_.qmp_socket.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status(Errc::kInvalidArgument,
                    "QMP socket path " + launch_.qmp_socket + " exists and is not a socket");
    }
    unlink(launch_.qmp_socket.c_str());  // a stale socket of an earlier run
  }

  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull.valid()) return Status::FromErrno(errno, "open /dev/null");
  UniqueFd log;
  if (!launch_.log_path.empty()) {
    log.Reset(open(launch_.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log.valid()) return Status::FromErrno(errno, "QEMU log file " + launch_.log_path);
    if (fstat(log.get(), &st) == 0) log_offset_ = static_cast<uint64_t>(st.st_size);
  } else {
    log.Reset(fcntl(devnull.get(), F_DUPFD_CLOEXEC, 0));
  }
  UniqueFd report_r, report_w, exec_r, exec_w;
  FTSYNC_RETURN_IF_ERROR(MakePipe(&report_r, &report_w));
  FTSYNC_RETURN_IF_ERROR(MakePipe(&exec_r, &exec_w));
  FTSYNC_RETURN_IF_ERROR(MoveHigh(&devnull));
  FTSYNC_RETURN_IF_ERROR(MoveHigh(&log));
  FTSYNC_RETURN_IF_ERROR(MoveHigh(&report_w));
  FTSYNC_RETURN_IF_ERROR(MoveHigh(&exec_w));

  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    if (StartsWith(kv, "FTSYNC_") || (launch_.dirty_tracking && StartsWith(kv, "LD_PRELOAD="))) {
      continue;
    }
    env.push_back(std::move(kv));
  }
  if (launch_.dirty_tracking) {
    env.push_back("LD_PRELOAD=" + launch_.preload_library);
    env.push_back("FTSYNC_RAM_PATH=" + *ram);
    env.push_back("FTSYNC_RAM_SIZE=" + std::to_string(launch_.ram_bytes));
    env.push_back("FTSYNC_REPORT_FD=" + std::to_string(kReportFdInChild));
  }
  std::vector<char*> argv_c = CStrings(argv);
  std::vector<char*> env_c = CStrings(env);
  const bool tracking = launch_.dirty_tracking;
  const bool die_with_parent = launch_.kill_with_parent;
  const pid_t parent = getpid();

  pid_t pid = fork();
  if (pid < 0) return Status::FromErrno(errno, "fork for QEMU");
  if (pid == 0) {
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(devnull.get(), 0);
    dup2(log.get(), 1);
    dup2(log.get(), 2);
    if (tracking) dup2(report_w.get(), kReportFdInChild);  // dup2 clears CLOEXEC
    // Nothing else of ours leaks into QEMU (the exec-error pipe closes at
    // exec too, which tells the parent the exec succeeded).
    close_range(kReportFdInChild + 1, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(argv_c[0], argv_c.data(), env_c.data());
    int err = errno;
    ssize_t ignored = write(exec_w.get(), &err, sizeof(err));
    (void)ignored;
    _exit(127);
  }
  pid_ = pid;
  report_w.Reset();
  exec_w.Reset();

  int exec_errno = 0;
  ssize_t n;
  while ((n = read(exec_r.get(), &exec_errno, sizeof(exec_errno))) < 0 && errno == EINTR) {
  }
  if (n == static_cast<ssize_t>(sizeof(exec_errno))) {
    int wst;
    while (waitpid(pid_, &wst, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    return Status::FromErrno(exec_errno, "execute QEMU " + argv[0]);
  }
  std::string cmdline;
  for (const std::string& a : argv) cmdline += (cmdline.empty() ? "" : " ") + a;
  logger_->Log(LogLevel::kInfo, "qemu: started pid " + std::to_string(pid_) + ": " + cmdline);

  int fl = fcntl(report_r.get(), F_GETFL);
  fcntl(report_r.get(), F_SETFL, fl | O_NONBLOCK);
  return WaitUntilReady(report_r.get());
}

// Reads the preload's report lines that are available.
void QemuProcess::ReadReport(int fd, std::string* pending) {
  char buf[512];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) pending->append(buf, static_cast<size_t>(n));
  size_t nl;
  while ((nl = pending->find('\n')) != std::string::npos) {
    std::string line = pending->substr(0, nl);
    pending->erase(0, nl + 1);
    if (StartsWith(line, "loaded ")) {
      preload_loaded_ = true;
    } else if (StartsWith(line, "ram ")) {
      char* end = nullptr;
      uint64_t addr = std::strtoull(line.c_str() + 4, &end, 0);
      uint64_t len = std::strtoull(end, nullptr, 0);
      if (len == launch_.ram_bytes)
        ram_addr_ = addr;
      else
        preload_error_ = "reported a RAM mapping of " + std::to_string(len) + " bytes";
    } else if (StartsWith(line, "error ")) {
      preload_error_ = line.substr(6);
    }
  }
}

Status QemuProcess::WaitUntilReady(int report_fd) {
  const uint64_t deadline = DeadlineNs(launch_.start_timeout_ms);
  std::string pending;
  uint64_t qmp_ready_ns = 0;
  auto fail = [&](Status cause) {
    ReadReport(report_fd, &pending);
    return StartupFailure(std::move(cause));
  };
  for (;;) {
    ReadReport(report_fd, &pending);
    if (!preload_error_.empty() || Exited()) return fail(Status::OK());
    if (!qmp_) {
      int ms = RemainingMs(deadline);
      Result<std::unique_ptr<QmpClient>> c =
          QmpClient::Connect(launch_.qmp_socket, ms < 0 ? 2000 : std::min(ms, 2000));
      if (c.ok()) {
        qmp_ = std::move(c).value();
        qmp_ready_ns = MonotonicNs();
      } else if (c.status().code() == Errc::kNotFound || c.status().code() == Errc::kPeerGone) {
        SleepMs(10);  // not listening yet, or QEMU is going away: look again
      } else if (c.status().code() != Errc::kIoError) {
        return fail(c.status());
      }
    }
    if (qmp_) {
      if (!launch_.dirty_tracking || ram_addr_ != 0) break;
      if (MonotonicNs() - qmp_ready_ns > kReportGraceMs * 1000000ull) {
        if (!preload_loaded_) {
          return fail(Status(Errc::kFailedPrecondition,
                             "QEMU runs without the preload library " + launch_.preload_library +
                                 " (the dynamic loader did not load it): its guest RAM cannot "
                                 "be tracked"));
        }
        return fail(Status(Errc::kFailedPrecondition,
                           "QEMU did not map the guest RAM file " + launch_.ram_path +
                               " writable and shared with its full size (a memory backend with "
                               "share=on and size=" +
                               std::to_string(launch_.ram_bytes) + " is needed)"));
      }
      SleepMs(5);
    }
    if (RemainingMs(deadline) == 0) {
      return fail(Status(Errc::kIoError, "QMP socket " + launch_.qmp_socket +
                                             ": QEMU not answering within " +
                                             std::to_string(launch_.start_timeout_ms) + " ms"));
    }
  }
  logger_->Log(LogLevel::kInfo, "qemu: pid " + std::to_string(pid_) + " ready" +
                                    (ram_addr_ ? ", guest RAM tracked" : ""));
  return Status::OK();
}

Status QemuProcess::StartupFailure(Status cause) {
  const bool exited_by_itself = Exited();
  qmp_.reset();
  KillAndReap();
  std::string log = LogTail(1500);
  while (!log.empty() && (log.back() == '\n' || log.back() == '\r')) log.pop_back();
  std::string quote = log.empty() ? "" : "; QEMU's log ends: " + log;
  Status s;
  if (!preload_error_.empty()) {
    s = Status(Errc::kNotSupported, "QEMU refused to start: ftsync-preload: " + preload_error_);
  } else if (exited_by_itself) {
    s = Status(Errc::kIoError,
               "QEMU exited during start-up (" + DescribeWaitStatus(wait_status_) + ")" + quote);
  } else {
    s = Status(cause.code(), cause.context() + quote);
  }
  logger_->Log(LogLevel::kError, "qemu: " + s.ToString());
  return s;
}

Status QemuProcess::Kill(int sig) {
  if (pid_ <= 0 || reaped_) return Status::OK();
  if (kill(pid_, sig) != 0 && errno != ESRCH) {
    return Status::FromErrno(errno, "kill QEMU pid " + std::to_string(pid_));
  }
  return Status::OK();
}

bool QemuProcess::Exited() {
  if (pid_ <= 0 || reaped_) return true;
  int st;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = st;
    logger_->Log(LogLevel::kInfo,
                 "qemu: pid " + std::to_string(pid_) + " " + DescribeWaitStatus(st));
  }
  return reaped_;
}

Result<int> QemuProcess::WaitForExit(int timeout_ms) {
  const uint64_t deadline = DeadlineNs(timeout_ms);
  while (!Exited()) {
    if (RemainingMs(deadline) == 0) {
      return Status(Errc::kBusy, "QEMU pid " + std::to_string(pid_) + " still runs");
    }
    SleepMs(5);
  }
  return wait_status_;
}

std::string QemuProcess::LogTail(size_t max_bytes) const {
  return internal::ReadFileTail(launch_.log_path, log_offset_, max_bytes);
}

}  // namespace ftsync
