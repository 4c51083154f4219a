// ftsync: QmpClient, one connection to QEMU's QMP socket.
//
// QMP is newline-delimited JSON. Every command carries a numeric "id" that
// QEMU echoes in its answer, so the answer of a command that timed out is
// recognised and dropped when it finally arrives. Messages with an "event"
// member are asynchronous events and are queued aside.
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <exception>

#include "ftsync/qemu.h"
#include "qemu/qemu_sys.h"

namespace ftsync {

using internal::DeadlineNs;
using internal::RemainingMs;
using internal::UniqueFd;
using json = nlohmann::json;

namespace {

// Longest line accepted from QEMU (query-* answers are a few KB).
constexpr size_t kMaxMessageBytes = 16 << 20;

std::string Shorten(const std::string& s, size_t n = 200) {
  return s.size() <= n ? s : s.substr(0, n) + "...";
}

// A QMP "error" object as a Status.
Status QmpError(const std::string& command, const json& error) {
  std::string cls = "GenericError", desc;
  if (error.is_object()) {
    auto c = error.find("class");
    if (c != error.end() && c->is_string()) cls = c->get<std::string>();
    auto d = error.find("desc");
    if (d != error.end() && d->is_string()) desc = d->get<std::string>();
  }
  Errc code = Errc::kFailedPrecondition;
  if (cls == "CommandNotFound") code = Errc::kNotSupported;
  if (cls == "DeviceNotFound") code = Errc::kNotFound;
  return Status(code, "QMP " + command + ": " + cls + ": " + desc);
}

}  // namespace

QmpClient::~QmpClient() {
  if (fd_ >= 0) close(fd_);
}

Result<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::string& path, int timeout_ms) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Status(Errc::kInvalidArgument, "QMP socket path '" + path +
                                              "' is empty or longer than " +
                                              std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(errno, "socket(AF_UNIX)");
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      return Status(Errc::kNotFound,
                    "QMP socket " + path + ": nothing listening (" + strerror(err) + ")");
    }
    return Status::FromErrno(err, "connect to QMP socket " + path);
  }
  std::unique_ptr<QmpClient> c(new QmpClient(fd.Release()));
  const uint64_t deadline = DeadlineNs(timeout_ms);
  json greeting;
  Status s = c->ReadMessage(deadline, &greeting, "the greeting on " + path);
  if (!s.ok()) return s;
  if (!greeting.is_object() || !greeting.contains("QMP")) {
    return Status(Errc::kProtocol,
                  "QMP socket " + path + ": not a QMP greeting: " +
                      Shorten(greeting.dump(-1, ' ', false, json::error_handler_t::replace)));
  }
  c->greeting_ = greeting["QMP"];
  Result<json> caps = c->Call("qmp_capabilities", nullptr, -1, RemainingMs(deadline));
  if (!caps.ok()) return caps.status().Annotate("QMP socket " + path);
  return c;
}

Result<json> QmpClient::Execute(const std::string& command, const json& arguments, int timeout_ms) {
  return Call(command, arguments, -1, timeout_ms < 0 ? kDefaultTimeoutMs : timeout_ms);
}

Status QmpClient::SendFd(const std::string& name, int fd, int timeout_ms) {
  if (fd < 0) return Status(Errc::kInvalidArgument, "QMP getfd: bad descriptor");
  Result<json> r =
      Call("getfd", json{{"fdname", name}}, fd, timeout_ms < 0 ? kDefaultTimeoutMs : timeout_ms);
  return r.status();
}

std::vector<json> QmpClient::TakeEvents() {
  std::vector<json> out(std::make_move_iterator(events_.begin()),
                        std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

Result<json> QmpClient::Call(const std::string& command, const json& arguments, int pass_fd,
                             int timeout_ms) {
  if (broken_) {
    return Status(Errc::kPeerGone, "QMP " + command + ": connection already closed");
  }
  const uint64_t id = next_id_++;
  std::string bytes;
  try {
    json msg = {{"execute", command}, {"id", id}};
    if (!arguments.is_null()) msg["arguments"] = arguments;
    bytes = msg.dump() + "\n";
  } catch (const std::exception& e) {
    return Status(Errc::kInvalidArgument, "QMP " + command + ": cannot encode: " + e.what());
  }
  const uint64_t deadline = DeadlineNs(timeout_ms);
  FTSYNC_RETURN_IF_ERROR(SendBytes(bytes, pass_fd).Annotate("QMP " + command));
  for (;;) {
    json msg;
    FTSYNC_RETURN_IF_ERROR(ReadMessage(deadline, &msg, "'" + command + "'"));
    if (!msg.is_object()) continue;
    if (msg.contains("event")) {
      events_.push_back(std::move(msg));
      while (events_.size() > kMaxQueuedEvents) events_.pop_front();
      continue;
    }
    auto mid = msg.find("id");
    // An answer without id can only be QEMU rejecting a request it could
    // not parse: ours. One with another id is a late answer: drop it.
    if (mid != msg.end() && !(mid->is_number_unsigned() && mid->get<uint64_t>() == id)) continue;
    auto err = msg.find("error");
    if (err != msg.end()) return QmpError(command, *err);
    auto ret = msg.find("return");
    if (ret != msg.end()) return std::move(*ret);
    // Neither: a greeting or something unknown; keep waiting.
  }
}

Status QmpClient::SendBytes(const std::string& bytes, int pass_fd) {
  size_t off = 0;
  bool fd_sent = pass_fd < 0;
  while (off < bytes.size()) {
    struct iovec iov = {const_cast<char*>(bytes.data()) + off, bytes.size() - off};
    struct msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (!fd_sent) {
      // The descriptor travels with the first bytes of the command; QEMU
      // attaches it to the command being read.
      mh.msg_control = control;
      mh.msg_controllen = sizeof(control);
      struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    ssize_t n = sendmsg(fd_, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      broken_ = true;
      if (err == EPIPE || err == ECONNRESET) {
        return Status(Errc::kPeerGone, "QMP connection closed (QEMU exited?)");
      }
      return Status::FromErrno(err, "send on the QMP socket");
    }
    fd_sent = true;
    off += static_cast<size_t>(n);
  }
  return Status::OK();
}

Status QmpClient::ReadMessage(uint64_t deadline_ns, json* out, const std::string& what) {
  for (;;) {
    size_t nl;
    while ((nl = inbuf_.find('\n')) != std::string::npos) {
      std::string line = inbuf_.substr(0, nl);
      inbuf_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      json msg;
      try {
        msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
      } catch (const std::exception&) {
        msg = json::value_t::discarded;
      }
      if (msg.is_discarded()) {
        broken_ = true;
        return Status(Errc::kProtocol, "QMP: unparsable message: " + Shorten(line));
      }
      *out = std::move(msg);
      return Status::OK();
    }
    if (inbuf_.size() > kMaxMessageBytes) {
      broken_ = true;
      return Status(Errc::kProtocol,
                    "QMP: message longer than " + std::to_string(kMaxMessageBytes) + " bytes");
    }
    int ms = RemainingMs(deadline_ns);
    if (ms == 0) {
      return Status(Errc::kIoError, "QMP not answering: no reply to " + what + " in time");
    }
    struct pollfd p = {fd_, POLLIN, 0};
    int rc = poll(&p, 1, ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "poll on the QMP socket");
    }
    if (rc == 0) continue;  // the deadline check above reports it
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      int err = errno;
      broken_ = true;
      if (err == ECONNRESET) {
        return Status(Errc::kPeerGone, "QMP connection reset (QEMU exited?) waiting for " + what);
      }
      return Status::FromErrno(err, "recv on the QMP socket");
    }
    if (n == 0) {
      broken_ = true;
      return Status(Errc::kPeerGone, "QMP connection closed (QEMU exited?) waiting for " + what);
    }
    inbuf_.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace ftsync
