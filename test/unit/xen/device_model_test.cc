// XenDeviceModel (src/xen/device_model.h) against a scripted QMP server
// standing in for qemu-xen: the checkpoint sequence Xen's save and Remus
// use (stop, xen-save-devices-state with live false, cont), the global
// dirty log switch, one connection per sequence, and the errors. No Xen.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "qemu/fake_qmp_server.h"
#include "test_util.h"
#include "xen/device_model.h"

namespace ftsync::xen {
namespace {

using json = nlohmann::json;
using test::FakeQmpServer;

std::string Return(const json& cmd) { return json{{"return", json::object()}, {"id", cmd["id"]}}.dump(); }
std::string Error(const json& cmd, const std::string& desc) {
  return json{{"error", {{"class", "GenericError"}, {"desc", desc}}}, {"id", cmd["id"]}}.dump();
}

// A qemu-xen stand-in: records arguments, writes `state` where
// xen-save-devices-state is told to.
struct FakeDm {
  std::mutex mu;
  std::vector<json> args;  // arguments of every command but qmp_capabilities
  std::string state = std::string("QEVM\0\0\0\3device-state", 20);
  std::string fail;  // a command to answer with an error
  FakeQmpServer::Script Script() {
    return [this](const json& cmd) -> std::vector<std::string> {
      const std::string ex = cmd["execute"];
      if (ex != "qmp_capabilities") {
        std::lock_guard<std::mutex> l(mu);
        args.push_back(cmd.value("arguments", json()));
      }
      if (ex == fail) return {Error(cmd, ex + " failed (test)")};
      if (ex == "xen-save-devices-state") {
        std::ofstream f(cmd["arguments"]["filename"].get<std::string>(), std::ios::binary);
        f << state;
      }
      return {Return(cmd)};
    };
  }
};

TEST_CASE("xen device model: a checkpoint is stop, save (live false), cont, on one connection", "[xen]") {
  test::TempDir dir;
  FakeDm dm;
  FakeQmpServer server(dir.Sub("qmp.sock"), dm.Script());
  XenDeviceModel m({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});

  REQUIRE(m.SetGlobalDirtyLog(true).ok());
  for (int epoch = 0; epoch < 3; ++epoch) {
    REQUIRE(m.Stop().ok());
    CHECK(m.stopped());
    auto blob = m.SaveDevicesState();
    REQUIRE(blob.ok());
    CHECK(std::string(blob->begin(), blob->end()) == dm.state);
    CHECK(::access(dir.Sub("dm.save").c_str(), F_OK) != 0);  // read back and removed
    REQUIRE(m.Cont().ok());
    CHECK(!m.stopped());
  }
  REQUIRE(m.SetGlobalDirtyLog(false).ok());

  std::vector<std::string> expect = {"qmp_capabilities", "xen-set-global-dirty-log"};
  for (int epoch = 0; epoch < 3; ++epoch)
    for (const char* c : {"qmp_capabilities", "stop", "xen-save-devices-state", "cont"}) expect.push_back(c);
  expect.push_back("qmp_capabilities");
  expect.push_back("xen-set-global-dirty-log");
  // Each sequence on its own connection: libxl may use the socket between.
  for (int i = 0; i < 100 && server.connections < 5; ++i) usleep(10000);
  CHECK(server.Commands() == expect);
  CHECK(server.connections == 5);
  std::lock_guard<std::mutex> l(dm.mu);
  CHECK(dm.args[0] == json{{"enable", true}});
  CHECK(dm.args[2] == json{{"filename", dir.Sub("dm.save")}, {"live", false}});
  CHECK(dm.args.back() == json{{"enable", false}});
}

TEST_CASE("xen device model: handles on one socket share QEMU's dirty log (one start, one stop)", "[xen]") {
  // QEMU 7.2 keeps a flag, not a count, and aborts on a stop while it is
  // clear: seen in the nested test when a second handle's disable followed
  // the first's.
  test::TempDir dir;
  FakeDm dm;
  FakeQmpServer server(dir.Sub("qmp.sock"), dm.Script());
  auto count = [&](bool enable) {
    std::lock_guard<std::mutex> l(dm.mu);
    int n = 0;
    for (const json& a : dm.args)
      if (a == json{{"enable", enable}}) ++n;
    return n;
  };
  {
    XenDeviceModel never({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
    REQUIRE(never.SetGlobalDirtyLog(false).ok());  // never enabled: nothing sent
    CHECK(!never.dirty_log());
  }
  XenDeviceModel a({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
  {
    XenDeviceModel b({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
    REQUIRE(a.SetGlobalDirtyLog(true).ok());
    REQUIRE(b.SetGlobalDirtyLog(true).ok());
    REQUIRE(a.SetGlobalDirtyLog(true).ok());  // already held: nothing sent
    CHECK(count(true) == 1);
    REQUIRE(a.SetGlobalDirtyLog(false).ok());  // b still holds it
    CHECK(count(false) == 0);
    CHECK(!a.dirty_log());
    CHECK(b.dirty_log());
  }  // b's destructor gives up the last share
  CHECK(count(false) == 1);
  REQUIRE(a.SetGlobalDirtyLog(false).ok());
  REQUIRE(a.SetGlobalDirtyLog(true).ok());  // a new start after the stop
  CHECK(count(true) == 2);
  REQUIRE(a.SetGlobalDirtyLog(false).ok());
  CHECK(count(false) == 2);
  for (int i = 0; i < 100 && server.connections < 4; ++i) usleep(10000);
  CHECK(server.connections == 4);  // two starts, two stops; nothing else
}

TEST_CASE("xen device model: errors are clear and leave nothing stopped", "[xen]") {
  test::TempDir dir;
  SECTION("no device model listening") {
    XenDeviceModel m({dir.Sub("none.sock"), dir.Sub("dm.save"), 500});
    Status s = m.Stop();
    CHECK(s.code() == Errc::kNotFound);
    CHECK(s.ToString().find("not an HVM domain with qemu-xen") != std::string::npos);
    CHECK(s.ToString().find(dir.Sub("none.sock")) != std::string::npos);
    CHECK(!m.stopped());
    CHECK(m.SetGlobalDirtyLog(true).code() == Errc::kNotFound);
  }
  SECTION("save outside stop..cont") {
    FakeDm dm;
    FakeQmpServer server(dir.Sub("qmp.sock"), dm.Script());
    XenDeviceModel m({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
    CHECK(m.SaveDevicesState().status().code() == Errc::kFailedPrecondition);
    CHECK(server.Commands().empty());
  }
  SECTION("QEMU refuses stop") {
    FakeDm dm;
    dm.fail = "stop";
    FakeQmpServer server(dir.Sub("qmp.sock"), dm.Script());
    XenDeviceModel m({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
    Status s = m.Stop();
    CHECK(!s.ok());
    CHECK(s.ToString().find("stop failed (test)") != std::string::npos);
    CHECK(!m.stopped());
    CHECK(m.Cont().ok());  // nothing to continue
  }
  SECTION("a state file that is not a QEMU migration stream") {
    FakeDm dm;
    dm.state = "garbage";
    FakeQmpServer server(dir.Sub("qmp.sock"), dm.Script());
    XenDeviceModel m({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
    REQUIRE(m.Stop().ok());
    auto r = m.SaveDevicesState();
    CHECK(r.status().code() == Errc::kCorruption);
    CHECK(r.status().ToString().find("QEVM") != std::string::npos);
    REQUIRE(m.Cont().ok());
  }
  SECTION("QEMU fails the save: the devices still continue") {
    FakeDm dm;
    dm.fail = "xen-save-devices-state";
    FakeQmpServer server(dir.Sub("qmp.sock"), dm.Script());
    {
      XenDeviceModel m({dir.Sub("qmp.sock"), dir.Sub("dm.save"), 2000});
      REQUIRE(m.Stop().ok());
      CHECK(!m.SaveDevicesState().ok());
      CHECK(m.stopped());
    }  // destroyed while stopped: it sends cont
    for (int i = 0; i < 100 && server.Commands().size() < 4; ++i) usleep(10000);
    CHECK(server.Commands() ==
          std::vector<std::string>{"qmp_capabilities", "stop", "xen-save-devices-state", "cont"});
  }
}

}  // namespace
}  // namespace ftsync::xen
