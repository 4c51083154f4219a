// The two roles of ftd. Each runs its engine on its own thread(s) and
// answers the control socket through Status()/StatsJson().
#ifndef FTSYNC_FTD_ROLES_H_
#define FTSYNC_FTD_ROLES_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "connection.h"
#include "ftsync/checkpointer.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "guest.h"
#include "log.h"
#include "options.h"

namespace ftd {

class Role {
 public:
  virtual ~Role() = default;
  virtual ftsync::Status Start() = 0;
  // One line: role, state, epochs.
  virtual std::string StatusLine() = 0;
  virtual std::string StatsText() = 0;
  virtual std::string StatsJson() = 0;
  // Control commands; returns the reply line.
  virtual std::string Failover() = 0;
  virtual void Stop() = 0;
  // Blocks until the role has stopped.
  virtual void Wait() = 0;
};

std::unique_ptr<Role> MakePrimary(const Options& o, asio::io_context& io, StderrLogger* log);
std::unique_ptr<Role> MakeBackup(const Options& o, asio::io_context& io, StderrLogger* log);

// "host:port" -> endpoint (numeric host or a name resolved once).
ftsync::Result<Tcp::endpoint> ParseEndpoint(asio::io_context& io, const std::string& hostport);

uint64_t NowNs();

}  // namespace ftd

#endif  // FTSYNC_FTD_ROLES_H_
