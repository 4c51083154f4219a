// ftsync: small POSIX helpers of the QEMU backend (internal).
#ifndef FTSYNC_SRC_QEMU_QEMU_SYS_H_
#define FTSYNC_SRC_QEMU_QEMU_SYS_H_

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ftsync/status.h"

namespace ftsync::internal {

// Owns a file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) Reset(o.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// A monotonic deadline timeout_ms from now (timeout_ms < 0: none).
uint64_t DeadlineNs(int timeout_ms);
// Milliseconds left until deadline_ns, rounded up; 0 when past; -1 for no
// deadline (UINT64_MAX).
int RemainingMs(uint64_t deadline_ns);

// pipe2(O_CLOEXEC).
Status MakePipe(UniqueFd* read_end, UniqueFd* write_end);

// "exit status 1" / "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int status);

// The last max_bytes of `path` from byte `offset` on ("" when unreadable).
std::string ReadFileTail(const std::string& path, uint64_t offset, size_t max_bytes);

// Drains a pipe's read end into a buffer on a helper thread, until end of
// file, an error, or Stop(). The fd is owned.
class PipeDrainer {
 public:
  explicit PipeDrainer(UniqueFd fd);
  ~PipeDrainer();  // Stop() + join
  // Waits until end of file or error, at most until deadline_ns. Returns
  // true if the drainer finished.
  bool WaitDone(uint64_t deadline_ns);
  void Stop();
  // After WaitDone returned true: the bytes read, or the read error.
  Result<std::vector<uint8_t>> Take();

 private:
  void Run();
  UniqueFd fd_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::vector<uint8_t> data_;
  int error_ = 0;
  std::thread thread_;
};

// Writes a buffer into a pipe's write end on a helper thread, then closes
// it. Stops early on error (EPIPE when the reader went away) or Stop().
class PipeFeeder {
 public:
  PipeFeeder(UniqueFd fd, std::span<const uint8_t> data);
  ~PipeFeeder();  // Stop() + join
  void Stop();
  void Join();
  // After Join: 0 when every byte was written, else the errno.
  int error() const { return error_; }

 private:
  void Run();
  UniqueFd fd_;
  std::span<const uint8_t> data_;
  std::atomic<bool> stop_{false};
  int error_ = 0;
  std::thread thread_;
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_QEMU_QEMU_SYS_H_
