// QmpClient against a scripted QMP server on a unix socket (no QEMU):
// negotiation, answers matched by id, events queued aside, QEMU's errors,
// timeouts, a closed connection, garbage, and getfd's SCM_RIGHTS.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "ftsync/qemu.h"
#include "qemu/fake_qmp_server.h"
#include "test_util.h"

namespace ftsync {
namespace {

using json = nlohmann::json;
using test::FakeQmpServer;

std::string Return(const json& cmd, const json& value = json::object()) {
  return json{{"return", value}, {"id", cmd["id"]}}.dump();
}

TEST_CASE("qmp: negotiates capabilities, matches answers by id, queues events", "[qemu]") {
  test::TempDir dir;
  FakeQmpServer server(dir.Sub("qmp.sock"), [](const json& cmd) -> std::vector<std::string> {
    if (cmd["execute"] == "query-status") {
      return {R"({"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}})",
              // a late answer to an older command: dropped
              json{{"return", {{"status", "stale"}}}, {"id", 999999}}.dump(),
              Return(cmd, {{"status", "paused"}, {"running", false}})};
    }
    return {Return(cmd)};
  });
  auto c = QmpClient::Connect(dir.Sub("qmp.sock"), 2000);
  REQUIRE(c.ok());
  CHECK((*c)->greeting()["version"]["qemu"]["major"] == 7);
  auto r = (*c)->Execute("query-status");
  REQUIRE(r.ok());
  CHECK((*r)["status"] == "paused");
  auto events = (*c)->TakeEvents();
  REQUIRE(events.size() == 1);
  CHECK(events[0]["event"] == "STOP");
  CHECK((*c)->TakeEvents().empty());
  CHECK(server.commands == std::vector<std::string>{"qmp_capabilities", "query-status"});
}

TEST_CASE("qmp: QEMU's errors come back as Status with class and description", "[qemu]") {
  test::TempDir dir;
  FakeQmpServer server(dir.Sub("qmp.sock"), [](const json& cmd) -> std::vector<std::string> {
    const std::string name = cmd["execute"];
    if (name == "bogus") {
      return {
          json{{"error",
                {{"class", "CommandNotFound"}, {"desc", "The command bogus has not been found"}}},
               {"id", cmd["id"]}}
              .dump()};
    }
    if (name == "cont") {
      return {
          json{{"error", {{"class", "GenericError"}, {"desc", "Migration is not finalized yet"}}},
               {"id", cmd["id"]}}
              .dump()};
    }
    return {Return(cmd)};
  });
  auto c = QmpClient::Connect(dir.Sub("qmp.sock"), 2000);
  REQUIRE(c.ok());
  auto r = (*c)->Execute("bogus");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::kNotSupported);
  CHECK_THAT(r.status().context(), Catch::Contains("CommandNotFound") && Catch::Contains("bogus"));
  r = (*c)->Execute("cont");
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::kFailedPrecondition);
  CHECK_THAT(r.status().context(),
             Catch::Contains("QMP cont: GenericError: Migration is not finalized yet"));
  CHECK((*c)->Execute("stop").ok());  // the connection stays usable
}

TEST_CASE("qmp: no answer in time is an error; the late answer is dropped", "[qemu]") {
  test::TempDir dir;
  std::vector<json> held;
  FakeQmpServer server(dir.Sub("qmp.sock"), [&](const json& cmd) -> std::vector<std::string> {
    if (cmd["execute"] == "slow") {
      held.push_back(cmd);
      return {};
    }
    std::vector<std::string> out;
    for (const json& h : held) out.push_back(Return(h, {{"who", "slow"}}));  // too late
    held.clear();
    out.push_back(Return(cmd, {{"who", cmd["execute"]}}));
    return out;
  });
  auto c = QmpClient::Connect(dir.Sub("qmp.sock"), 2000);
  REQUIRE(c.ok());
  auto r = (*c)->Execute("slow", nullptr, 100);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::kIoError);
  CHECK_THAT(r.status().context(), Catch::Contains("not answering"));
  r = (*c)->Execute("fast");
  REQUIRE(r.ok());
  CHECK((*r)["who"] == "fast");
}

TEST_CASE("qmp: nothing listening, a closed connection, garbage", "[qemu]") {
  test::TempDir dir;
  auto none = QmpClient::Connect(dir.Sub("nobody.sock"), 100);
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == Errc::kNotFound);

  auto too_long = QmpClient::Connect("/tmp/" + std::string(200, 'x'), 100);
  CHECK(too_long.status().code() == Errc::kInvalidArgument);

  {
    FakeQmpServer server(dir.Sub("close.sock"), [](const json& cmd) -> std::vector<std::string> {
      if (cmd["execute"] == "quit") return {"CLOSE"};
      return {Return(cmd)};
    });
    auto c = QmpClient::Connect(dir.Sub("close.sock"), 2000);
    REQUIRE(c.ok());
    auto r = (*c)->Execute("quit");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::kPeerGone);
    CHECK((*c)->Execute("stop").status().code() == Errc::kPeerGone);
  }
  {
    FakeQmpServer server(dir.Sub("garbage.sock"), [](const json&) -> std::vector<std::string> {
      return {"this is not json"};
    });
    auto c = QmpClient::Connect(dir.Sub("garbage.sock"), 2000);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Errc::kProtocol);
  }
  {
    FakeQmpServer server(
        dir.Sub("notqmp.sock"),
        [](const json& cmd) -> std::vector<std::string> { return {Return(cmd)}; },
        R"({"hello": 1})");
    auto c = QmpClient::Connect(dir.Sub("notqmp.sock"), 2000);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Errc::kProtocol);
  }
  {
    // Listening but silent: "QMP not answering".
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::string p = dir.Sub("silent.sock");
    std::strncpy(a.sun_path, p.c_str(), sizeof(a.sun_path) - 1);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(listen(fd, 4) == 0);
    auto c = QmpClient::Connect(p, 150);
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == Errc::kIoError);
    CHECK_THAT(c.status().context(), Catch::Contains("not answering"));
    close(fd);
  }
}

TEST_CASE("qmp: SendFd passes the descriptor with getfd", "[qemu]") {
  test::TempDir dir;
  json getfd_args;
  FakeQmpServer server(dir.Sub("qmp.sock"), [&](const json& cmd) -> std::vector<std::string> {
    if (cmd["execute"] == "getfd") getfd_args = cmd["arguments"];
    return {Return(cmd)};
  });
  auto c = QmpClient::Connect(dir.Sub("qmp.sock"), 2000);
  REQUIRE(c.ok());
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  REQUIRE((*c)->SendFd("state", fds[1]).ok());
  CHECK(getfd_args["fdname"] == "state");
  REQUIRE(server.received_fd >= 0);
  // The received descriptor is the same pipe: what it writes, we read.
  REQUIRE(write(server.received_fd, "x", 1) == 1);
  char ch = 0;
  CHECK(read(fds[0], &ch, 1) == 1);
  CHECK(ch == 'x');
  close(fds[0]);
  close(fds[1]);
  CHECK((*c)->SendFd("bad", -1).code() == Errc::kInvalidArgument);
}

}  // namespace
}  // namespace ftsync
