// ftsync: POSIX helpers of the QEMU backend.
#include "qemu/qemu_sys.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "util/clock.h"

namespace ftsync::internal {

namespace {
// How often helper threads look at their stop flag.
constexpr int kStopPollMs = 20;
}  // namespace

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

uint64_t DeadlineNs(int timeout_ms) {
  if (timeout_ms < 0) return UINT64_MAX;
  return MonotonicNs() + static_cast<uint64_t>(timeout_ms) * 1000000u;
}

int RemainingMs(uint64_t deadline_ns) {
  if (deadline_ns == UINT64_MAX) return -1;
  uint64_t now = MonotonicNs();
  if (now >= deadline_ns) return 0;
  uint64_t ms = (deadline_ns - now + 999999) / 1000000;
  return static_cast<int>(std::min<uint64_t>(ms, 1u << 30));
}

Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(errno, "pipe2");
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  return Status::OK();
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  return "wait status " + std::to_string(status);
}

std::string ReadFileTail(const std::string& path, uint64_t offset, size_t max_bytes) {
  if (path.empty()) return "";
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return "";
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return "";
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size <= offset) return "";
  uint64_t start = std::max<uint64_t>(offset, size > max_bytes ? size - max_bytes : 0);
  std::string out(size - start, '\0');
  ssize_t n = pread(fd.get(), out.data(), out.size(), static_cast<off_t>(start));
  if (n <= 0) return "";
  out.resize(static_cast<size_t>(n));
  return out;
}

// ---- PipeDrainer ----------------------------------------------------------

PipeDrainer::PipeDrainer(UniqueFd fd) : fd_(std::move(fd)) {
  thread_ = std::thread([this] { Run(); });
}

PipeDrainer::~PipeDrainer() {
  Stop();
  if (thread_.joinable()) thread_.join();
}

void PipeDrainer::Stop() { stop_ = true; }

void PipeDrainer::Run() {
  std::vector<uint8_t> chunk(1 << 16);
  while (!stop_) {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    int rc = poll(&p, 1, kStopPollMs);
    if (rc < 0 && errno != EINTR) {
      error_ = errno;
      break;
    }
    if (rc <= 0) continue;
    ssize_t n = read(fd_.get(), chunk.data(), chunk.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      error_ = errno;
      break;
    }
    if (n == 0) break;  // end of file: every writer closed its end
    data_.insert(data_.end(), chunk.begin(), chunk.begin() + n);
  }
  if (stop_ && error_ == 0) error_ = ECANCELED;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

bool PipeDrainer::WaitDone(uint64_t deadline_ns) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!done_) {
    int ms = RemainingMs(deadline_ns);
    if (ms == 0) return false;
    if (ms < 0) {
      cv_.wait(lock);
    } else {
      cv_.wait_for(lock, std::chrono::milliseconds(ms));
    }
  }
  return true;
}

Result<std::vector<uint8_t>> PipeDrainer::Take() {
  if (thread_.joinable()) thread_.join();
  if (error_ != 0) return Status::FromErrno(error_, "reading the state pipe");
  return std::move(data_);
}

// ---- PipeFeeder -----------------------------------------------------------

PipeFeeder::PipeFeeder(UniqueFd fd, std::span<const uint8_t> data)
    : fd_(std::move(fd)), data_(data) {
  // Non-blocking, so Stop() is noticed while the reader does not read.
  int fl = fcntl(fd_.get(), F_GETFL);
  if (fl >= 0) fcntl(fd_.get(), F_SETFL, fl | O_NONBLOCK);
  thread_ = std::thread([this] { Run(); });
}

PipeFeeder::~PipeFeeder() {
  Stop();
  Join();
}

void PipeFeeder::Stop() { stop_ = true; }

void PipeFeeder::Join() {
  if (thread_.joinable()) thread_.join();
}

void PipeFeeder::Run() {
  // A write to a pipe without reader must fail with EPIPE, not kill the
  // process: block SIGPIPE on this thread (a pending one dies with it).
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  size_t off = 0;
  while (off < data_.size() && !stop_) {
    struct pollfd p = {fd_.get(), POLLOUT, 0};
    int rc = poll(&p, 1, kStopPollMs);
    if (rc < 0 && errno != EINTR) {
      error_ = errno;
      break;
    }
    if (rc <= 0) continue;
    ssize_t n = write(fd_.get(), data_.data() + off, data_.size() - off);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      error_ = errno;
      break;
    }
    off += static_cast<size_t>(n);
  }
  if (off < data_.size() && error_ == 0) error_ = ECANCELED;
  fd_.Reset();  // end of file for the reader
}

}  // namespace ftsync::internal
