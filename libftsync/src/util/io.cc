#include "ftsync/io.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

#include "ftsync/logger.h"

namespace ftsync {

Status ByteSource::ReadExact(std::span<uint8_t> buf) {
  size_t got = 0;
  while (got < buf.size()) {
    Result<size_t> n = ReadSome(buf.subspan(got));
    if (!n.ok()) return n.status();
    if (*n == 0) {
      if (got == 0) return Status(Errc::kPeerGone, "end of stream");
      return Status(Errc::kCorruption,
                    "truncated: end of stream after " + std::to_string(got) +
                        " of " + std::to_string(buf.size()) + " bytes");
    }
    got += *n;
  }
  return Status::OK();
}

// ---- MemoryPipe -----------------------------------------------------------

struct MemoryPipe::State {
  std::mutex mu;
  std::condition_variable cv;
  // Written bytes as the writer's chunks; the reader consumes the front one
  // from `offset`.
  std::deque<std::vector<uint8_t>> data;
  size_t offset = 0;
  uint64_t read = 0;
  bool writer_closed = false;
  bool reader_closed = false;
  uint64_t written = 0;
};

namespace {

class PipeSink : public ByteSink {
 public:
  explicit PipeSink(std::shared_ptr<MemoryPipe::State> s) : s_(std::move(s)) {}
  Status Write(std::span<const ConstBuffer> buffers) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    if (s_->reader_closed) return Status(Errc::kPeerGone, "pipe reader closed");
    if (s_->writer_closed) return Status(Errc::kFailedPrecondition, "write after close");
    size_t total = 0;
    for (ConstBuffer b : buffers) total += b.size();
    if (total == 0) return Status::OK();
    std::vector<uint8_t> chunk;
    chunk.reserve(total);
    for (ConstBuffer b : buffers) chunk.insert(chunk.end(), b.begin(), b.end());
    s_->data.push_back(std::move(chunk));
    s_->written += total;
    s_->cv.notify_all();
    return Status::OK();
  }
  Status Close() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->writer_closed = true;
    s_->cv.notify_all();
    return Status::OK();
  }

 private:
  std::shared_ptr<MemoryPipe::State> s_;
};

class PipeSource : public ByteSource {
 public:
  explicit PipeSource(std::shared_ptr<MemoryPipe::State> s) : s_(std::move(s)) {}
  Result<size_t> ReadSome(std::span<uint8_t> buf) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->cv.wait(lock, [&] { return !s_->data.empty() || s_->writer_closed || s_->reader_closed; });
    if (s_->reader_closed) return Status(Errc::kFailedPrecondition, "read after close");
    size_t n = 0;
    while (n < buf.size() && !s_->data.empty()) {
      const std::vector<uint8_t>& front = s_->data.front();
      size_t take = std::min(buf.size() - n, front.size() - s_->offset);
      std::memcpy(buf.data() + n, front.data() + s_->offset, take);
      n += take;
      s_->read += take;
      s_->offset += take;
      if (s_->offset == front.size()) {
        s_->data.pop_front();
        s_->offset = 0;
      }
    }
    return n;
  }
  Result<bool> WaitReadable(int timeout_ms) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    auto ready = [&] { return !s_->data.empty() || s_->writer_closed || s_->reader_closed; };
    if (timeout_ms < 0) {
      s_->cv.wait(lock, ready);
      return true;
    }
    return s_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), ready);
  }

 private:
  std::shared_ptr<MemoryPipe::State> s_;
};

// ---- file descriptors -----------------------------------------------------

class FdSink : public ByteSink {
 public:
  FdSink(int fd, bool own) : fd_(fd), own_(own) {
    struct stat st;
    is_socket_ = ::fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
  }
  ~FdSink() override {
    if (own_ && fd_ >= 0) ::close(fd_);
  }
  Status Write(std::span<const ConstBuffer> buffers) override {
    if (fd_ < 0) return Status(Errc::kFailedPrecondition, "write after close");
    std::vector<iovec> iov;
    iov.reserve(buffers.size());
    for (ConstBuffer b : buffers)
      if (!b.empty()) iov.push_back({const_cast<uint8_t*>(b.data()), b.size()});
    size_t i = 0;
    while (i < iov.size()) {
      int cnt = static_cast<int>(std::min<size_t>(iov.size() - i, IOV_MAX));
      ssize_t n;
      if (is_socket_) {
        // MSG_NOSIGNAL: a vanished peer is an error to report, not SIGPIPE.
        msghdr msg{};
        msg.msg_iov = &iov[i];
        msg.msg_iovlen = static_cast<size_t>(cnt);
        n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) {
          is_socket_ = false;
          continue;
        }
      } else {
        n = ::writev(fd_, &iov[i], cnt);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {  // a non-blocking fd: wait until it drains
          pollfd p{fd_, POLLOUT, 0};
          if (::poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
        }
        return Status::FromErrno(errno, "write to fd " + std::to_string(fd_));
      }
      size_t left = static_cast<size_t>(n);
      while (i < iov.size() && left >= iov[i].iov_len) left -= iov[i++].iov_len;
      if (left) {
        iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + left;
        iov[i].iov_len -= left;
      }
    }
    return Status::OK();
  }
  Status Close() override {
    if (fd_ < 0) return Status::OK();
    int rc = own_ ? ::close(fd_) : 0;
    fd_ = -1;
    if (rc != 0) return Status::FromErrno(errno, "close");
    return Status::OK();
  }

 private:
  int fd_;
  bool own_;
  bool is_socket_ = false;
};

class FdSource : public ByteSource {
 public:
  FdSource(int fd, bool own) : fd_(fd), own_(own) {}
  ~FdSource() override {
    if (own_ && fd_ >= 0) ::close(fd_);
  }
  Result<size_t> ReadSome(std::span<uint8_t> buf) override {
    for (;;) {
      ssize_t n = ::read(fd_, buf.data(), buf.size());
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        Result<bool> r = WaitReadable(-1);
        if (!r.ok()) return r.status();
        continue;
      }
      return Status::FromErrno(errno, "read from fd " + std::to_string(fd_));
    }
  }
  Result<bool> WaitReadable(int timeout_ms) override {
    pollfd p{fd_, POLLIN, 0};
    for (;;) {
      int rc = ::poll(&p, 1, timeout_ms);
      if (rc >= 0) return rc > 0;
      if (errno != EINTR) return Status::FromErrno(errno, "poll");
    }
  }

 private:
  int fd_;
  bool own_;
};

class DiscardLogger : public Logger {
 public:
  void Log(LogLevel, std::string_view) override {}
};

}  // namespace

MemoryPipe::MemoryPipe()
    : state_(std::make_shared<State>()),
      sink_(std::make_unique<PipeSink>(state_)),
      source_(std::make_unique<PipeSource>(state_)) {}
MemoryPipe::~MemoryPipe() = default;
ByteSink& MemoryPipe::sink() { return *sink_; }
ByteSource& MemoryPipe::source() { return *source_; }
void MemoryPipe::CloseReader() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->reader_closed = true;
  state_->data.clear();
  state_->offset = 0;
  state_->cv.notify_all();
}
uint64_t MemoryPipe::buffered() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->written - state_->read;
}

uint64_t MemoryPipe::bytes_written() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->written;
}

std::unique_ptr<ByteSink> MakeFdSink(int fd, bool own) {
  return std::make_unique<FdSink>(fd, own);
}
std::unique_ptr<ByteSource> MakeFdSource(int fd, bool own) {
  return std::make_unique<FdSource>(fd, own);
}

Logger* NullLogger() {
  static DiscardLogger logger;
  return &logger;
}

}  // namespace ftsync
