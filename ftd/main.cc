// ftd: the ftsync daemon. `ftd primary`, `ftd backup`, `ftd ctl`; see
// `ftd --help`.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include "control.h"
#include "log.h"
#include "options.h"
#include "roles.h"

namespace {

int Ctl(int argc, char** argv) {
  std::string path = ftd::Options().control, cmd;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--control" && i + 1 < argc) path = argv[++i];
    else if (a.rfind("--control=", 0) == 0) path = a.substr(10);
    else cmd = cmd.empty() ? a : cmd + " " + a;  // protect HOST:PORT
  }
  if (cmd.empty()) {
    std::fprintf(stderr, "usage: ftd ctl [--control PATH] status|stats|stats-json|failover|protect HOST:PORT|stop\n");
    return 2;
  }
  auto r = ftd::ControlRequest(path, cmd);
  if (!r.ok()) {
    std::fprintf(stderr, "ftd ctl: %s\n", r.status().ToString().c_str());
    return 1;
  }
  std::fputs(r->c_str(), stdout);
  return r->rfind("error", 0) == 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "ctl") == 0) return Ctl(argc, argv);
  ftd::Options o;
  std::string help;
  ftsync::Status s = ftd::ParseOptions(argc, argv, &o, &help);
  if (!help.empty()) {
    std::fputs(help.c_str(), stdout);
    return 0;
  }
  if (!s.ok()) {
    std::fprintf(stderr, "ftd: %s\n", s.context().c_str());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  ftd::StderrLogger log(o.role == ftd::RoleKind::kPrimary ? "primary" : "backup");
  ftd::asio::io_context io;
  auto work = ftd::asio::make_work_guard(io);
  std::unique_ptr<ftd::Role> role = o.role == ftd::RoleKind::kPrimary ? ftd::MakePrimary(o, io, &log)
                                                                  : ftd::MakeBackup(o, io, &log);
  std::thread stopper;
  auto stop = [&] {
    if (stopper.joinable()) return;  // already stopping
    log.Info("stopping");
    role->Stop();
    work.reset();
    // The roles' threads may need the io thread to finish: wait elsewhere.
    stopper = std::thread([&] {
      role->Wait();
      io.stop();
    });
  };
  ftd::ControlServer control(io, role.get(), stop);
  s = control.Listen(o.control);
  if (s.ok()) s = role->Start();
  if (!s.ok()) {
    log.Error(s.ToString());
    return 1;
  }
  ftd::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) stop();
  });
  io.run();
  if (stopper.joinable()) stopper.join();
  role->Wait();
  return 0;
}
