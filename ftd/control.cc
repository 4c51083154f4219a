#include "control.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include <filesystem>

namespace ftd {
using ftsync::Errc;
using ftsync::Status;
using Local = asio::local::stream_protocol;

ControlServer::ControlServer(asio::io_context& io, Role* role, std::function<void()> on_stop)
    : io_(io), role_(role), on_stop_(std::move(on_stop)), acceptor_(io) {}

ControlServer::~ControlServer() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (!path_.empty()) ::unlink(path_.c_str());
}

Status ControlServer::Listen(const std::string& path) {
  std::error_code fec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), fec);
  ::unlink(path.c_str());  // a stale socket of an earlier run
  boost::system::error_code ec;
  acceptor_.open(Local(), ec);
  if (!ec) acceptor_.bind(Local::endpoint(path), ec);
  if (!ec) acceptor_.listen(8, ec);
  if (ec) return Status(Errc::kIoError, "control socket " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0600);
  path_ = path;
  Accept();
  return Status::OK();
}

std::string ControlServer::Handle(const std::string& cmd) {
  if (cmd == "status") return role_->StatusLine();
  if (cmd == "stats") return role_->StatsText();
  if (cmd == "stats-json") return role_->StatsJson();
  if (cmd == "failover") return role_->Failover();
  if (cmd.rfind("protect ", 0) == 0) return role_->Protect(cmd.substr(8));
  if (cmd == "protect") return "error: protect needs HOST:PORT (the new backup)";
  if (cmd == "stop") {
    asio::post(io_, on_stop_);
    return "ok: stopping";
  }
  return "error: unknown command '" + cmd + "' (status, stats, stats-json, failover, protect HOST:PORT, stop)";
}

void ControlServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, Local::socket sock) {
    if (ec) return;  // closed
    auto s = std::make_shared<Local::socket>(std::move(sock));
    auto buf = std::make_shared<asio::streambuf>(4096);
    asio::async_read_until(*s, *buf, '\n', [this, s, buf](boost::system::error_code ec2, size_t) {
      std::string line;
      std::istream in(buf.get());
      std::getline(in, line);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      auto reply = std::make_shared<std::string>((ec2 && line.empty()) ? "error: no command\n" : Handle(line) + "\n");
      asio::async_write(*s, asio::buffer(*reply), [s, reply](boost::system::error_code, size_t) {});
    });
    Accept();
  });
}

ftsync::Result<std::string> ControlRequest(const std::string& path, const std::string& command) {
  asio::io_context io;
  Local::socket s(io);
  boost::system::error_code ec;
  s.connect(Local::endpoint(path), ec);
  if (ec) return Status(Errc::kNotFound, "cannot reach ftd at " + path + ": " + ec.message());
  std::string line = command + "\n";
  asio::write(s, asio::buffer(line), ec);
  // An ftd still starting (its guest being opened) accepts but answers only
  // once it runs: wait at most 10 s for the whole reply.
  std::string reply;
  std::array<char, 4096> buf;
  const int fd = s.native_handle();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p = {fd, POLLIN, 0};
    int r = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return Status(Errc::kBusy, "ftd at " + path + " did not answer within 10 s (still starting?)");
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    reply.append(buf.data(), static_cast<size_t>(n));
  }
  return reply;
}

}  // namespace ftd
