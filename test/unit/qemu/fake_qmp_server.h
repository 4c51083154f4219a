// A scripted QMP server on a unix socket, for tests of QMP clients (no
// QEMU): it serves one connection at a time, and accepts the next one when
// a client hangs up (a client may reconnect per command sequence).
#ifndef FTSYNC_TEST_UNIT_QEMU_FAKE_QMP_SERVER_H_
#define FTSYNC_TEST_UNIT_QEMU_FAKE_QMP_SERVER_H_

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace ftsync::test {

// For each command line it reads, `script` returns the lines to send back
// (with "\r\n" added; the line "CLOSE" closes the connection and stops the
// server); a received descriptor is kept in `received_fd`.
class FakeQmpServer {
 public:
  using json = nlohmann::json;
  using Script = std::function<std::vector<std::string>(const json& cmd)>;

  FakeQmpServer(const std::string& path, Script script, std::string greeting = "")
      : path_(path), script_(std::move(script)) {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof(a.sun_path) - 1);
    REQUIRE(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(listen(listen_fd_, 4) == 0);
    if (greeting.empty()) {
      greeting =
          R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}})";
    }
    thread_ = std::thread([this, greeting] { Serve(greeting); });
  }
  ~FakeQmpServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    close(listen_fd_);
    if (received_fd >= 0) close(received_fd);
    unlink(path_.c_str());
  }

  int received_fd = -1;
  std::vector<std::string> commands;  // "execute" of each command seen (see Commands)
  std::atomic<int> connections{0};    // accepted so far

  // A copy of `commands`, safe while the server runs.
  std::vector<std::string> Commands() {
    std::lock_guard<std::mutex> l(mu_);
    return commands;
  }

 private:
  void Serve(const std::string& greeting) {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      while (!stop_ && poll(&p, 1, 20) == 0) {
      }
      if (stop_) return;
      int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      connections++;
      if (!ServeOne(c, greeting)) return;
    }
  }
  // Serves connection `c` until the client hangs up (true) or the script
  // says CLOSE or the server stops (false).
  bool ServeOne(int c, const std::string& greeting) {
    Send(c, greeting);
    std::string buf;
    while (!stop_) {
      pollfd q{c, POLLIN, 0};
      if (poll(&q, 1, 20) <= 0) continue;
      char data[4096];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
      iovec iov{data, sizeof(data)};
      msghdr mh{};
      mh.msg_iov = &iov;
      mh.msg_iovlen = 1;
      mh.msg_control = control;
      mh.msg_controllen = sizeof(control);
      ssize_t n = recvmsg(c, &mh, 0);
      if (n <= 0) {
        close(c);
        return true;
      }
      for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
          std::memcpy(&received_fd, CMSG_DATA(cm), sizeof(int));
        }
      }
      buf.append(data, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        json cmd = json::parse(buf.substr(0, nl));
        buf.erase(0, nl + 1);
        {
          std::lock_guard<std::mutex> l(mu_);
          commands.push_back(cmd.value("execute", ""));
        }
        for (const std::string& line : script_(cmd)) {
          if (line == "CLOSE") {
            close(c);
            return false;
          }
          Send(c, line);
        }
      }
    }
    close(c);
    return false;
  }
  static void Send(int fd, const std::string& line) {
    std::string s = line + "\r\n";
    (void)send(fd, s.data(), s.size(), MSG_NOSIGNAL);
  }

  std::string path_;
  Script script_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::thread thread_;
};

}  // namespace ftsync::test

#endif  // FTSYNC_TEST_UNIT_QEMU_FAKE_QMP_SERVER_H_
