// The control socket: a unix stream socket taking one command per
// connection (a line), answering with text and closing.
//   status      one line: role, state, epochs
//   stats       human-readable counters
//   stats-json  the same as one JSON object
//   failover    backup: take over now
//   stop        primary: end the session cleanly (END), then exit; backup: exit
#ifndef FTSYNC_FTD_CONTROL_H_
#define FTSYNC_FTD_CONTROL_H_

#include <functional>
#include <memory>
#include <string>

#include "connection.h"
#include "ftsync/status.h"
#include "roles.h"

namespace ftd {

class ControlServer {
 public:
  ControlServer(asio::io_context& io, Role* role, std::function<void()> on_stop);
  ~ControlServer();
  ftsync::Status Listen(const std::string& path);
  std::string Handle(const std::string& command);

 private:
  void Accept();
  asio::io_context& io_;
  Role* role_;
  std::function<void()> on_stop_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::string path_;
};

// Client side: sends `command` to the socket at `path`, returns the reply.
ftsync::Result<std::string> ControlRequest(const std::string& path, const std::string& command);

}  // namespace ftd

#endif  // FTSYNC_FTD_CONTROL_H_
