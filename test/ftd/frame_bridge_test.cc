// The frame bridge: QEMU's netdev stream on one side (played by the test),
// a frame-preserving host fd on the other (a SEQPACKET socket pair standing
// in for the TAP device).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "frame_bridge.h"

namespace ftd {
namespace {
using Local = asio::local::stream_protocol;

std::vector<uint8_t> Frame(uint8_t tag, size_t len = 60) {
  std::vector<uint8_t> f(len, tag);
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::memset(f.data(), 0xff, 6);
  std::memcpy(&f[6], mac, 6);
  f[12] = 0x08;  // IPv4
  f[13] = 0x00;
  const uint8_t ip[4] = {10, 0, 0, 2};
  std::memcpy(&f[26], ip, 4);
  return f;
}

std::vector<uint8_t> Framed(const std::vector<uint8_t>& f) {
  std::vector<uint8_t> b(4 + f.size());
  b[2] = static_cast<uint8_t>(f.size() >> 8);
  b[3] = static_cast<uint8_t>(f.size());
  std::copy(f.begin(), f.end(), b.begin() + 4);
  return b;
}

// Reads one frame from the host side within `ms`, or returns empty.
std::vector<uint8_t> HostRead(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) return {};
  std::vector<uint8_t> b(70000);
  ssize_t n = ::read(fd, b.data(), b.size());
  b.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return b;
}

struct Rig {
  asio::io_context io;
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread t;
  StderrLogger log{"test"};
  int host[2];
  std::unique_ptr<FrameBridge> bridge;
  std::string path = "/tmp/ftd-bridge-test-" + std::to_string(getpid()) + ".sock";
  Local::socket qemu{io};

  Rig() {
    REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, host) == 0);
    bridge = std::make_unique<FrameBridge>(io, host[0], &log);
    REQUIRE(bridge->Listen(path).ok());
    work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(io.get_executor());
    t = std::thread([this] { io.run(); });
    qemu.connect(Local::endpoint(path));
  }
  ~Rig() {
    boost::system::error_code ec;
    qemu.close(ec);
    asio::post(io, [this] { bridge.reset(); });
    work.reset();
    io.stop();
    t.join();
    ::close(host[1]);
  }
};

TEST_CASE("frame bridge: guest frames wait for their epoch's commit", "[ftd]") {
  Rig r;
  REQUIRE(r.bridge->outbound().Setup().ok());  // a session: protected
  asio::write(r.qemu, asio::buffer(Framed(Frame(1))));
  auto two = Framed(Frame(2, 1500));
  asio::write(r.qemu, asio::buffer(two.data(), 700));  // split across reads
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  asio::write(r.qemu, asio::buffer(two.data() + 700, two.size() - 700));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(HostRead(r.host[1], 100).empty());  // held: epoch not acknowledged
  REQUIRE(r.bridge->outbound().Postsuspend(1).ok());
  asio::write(r.qemu, asio::buffer(Framed(Frame(3))));  // belongs to epoch 2
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(HostRead(r.host[1], 50).empty());
  REQUIRE(r.bridge->outbound().Commit(1).ok());  // ACK(1)
  CHECK(HostRead(r.host[1], 500) == Frame(1));
  CHECK(HostRead(r.host[1], 500) == Frame(2, 1500));
  CHECK(HostRead(r.host[1], 100).empty());  // frame 3 waits for epoch 2
  REQUIRE(r.bridge->outbound().Postsuspend(2).ok());
  REQUIRE(r.bridge->outbound().Commit(2).ok());
  CHECK(HostRead(r.host[1], 500) == Frame(3));
  CHECK(r.bridge->counters().from_guest == 3);
}

TEST_CASE("frame bridge: host frames reach the guest at once; unprotected passes through", "[ftd]") {
  Rig r;
  auto f = Frame(9, 100);
  REQUIRE(::write(r.host[1], f.data(), f.size()) == static_cast<ssize_t>(f.size()));
  std::vector<uint8_t> got(104);
  asio::read(r.qemu, asio::buffer(got));
  CHECK(got == Framed(f));
  // No session: the guest's frames flow without waiting.
  asio::write(r.qemu, asio::buffer(Framed(Frame(4))));
  CHECK(HostRead(r.host[1], 1000) == Frame(4));
}

TEST_CASE("frame bridge: announces the learned guest address after a takeover", "[ftd]") {
  Rig r;
  CHECK(r.bridge->Announce().code() == ftsync::Errc::kNotFound);
  asio::write(r.qemu, asio::buffer(Framed(Frame(5))));
  CHECK(HostRead(r.host[1], 1000) == Frame(5));
  REQUIRE(r.bridge->Announce().ok());
  auto arp = HostRead(r.host[1], 1000);
  REQUIRE(arp.size() == 42);
  CHECK(arp[12] == 0x08);
  CHECK(arp[13] == 0x06);
  CHECK(arp[6] == 0x52);                      // the guest's MAC as sender
  CHECK(arp[28] == 10);                       // its IP as sender...
  CHECK(arp[41] == 2);                        // ...and as target
}

}  // namespace
}  // namespace ftd
