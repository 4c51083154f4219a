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
  // Backup, after a takeover: protect the guest it runs to the backup at
  // `peer` (HOST:PORT), as a primary would. "ok: ..." or "error: ...".
  virtual std::string Protect(const std::string& peer) {
    return "error: protect is a backup command, for the guest it took over (not " + peer + ")";
  }
  // True once the role's engine has ended by itself (a primary whose
  // guest failed); Stop() and Wait() are still to be called.
  virtual bool Done() { return false; }
  virtual void Stop() = 0;
  // Blocks until the role has stopped.
  virtual void Wait() = 0;
};

std::unique_ptr<Role> MakePrimary(const Options& o, asio::io_context& io, StderrLogger* log);
std::unique_ptr<Role> MakeBackup(const Options& o, asio::io_context& io, StderrLogger* log);
// A primary for a guest that already runs (a backup's taken-over guest):
// Start() does not launch one. `o.peer` is the new backup.
std::unique_ptr<Role> MakePrimaryFor(const Options& o, asio::io_context& io, StderrLogger* log,
                                     std::unique_ptr<Guest> guest);

// "host:port" -> endpoint (numeric host or a name resolved once).
ftsync::Result<Tcp::endpoint> ParseEndpoint(asio::io_context& io, const std::string& hostport);

uint64_t NowNs();

}  // namespace ftd

#endif  // FTSYNC_FTD_ROLES_H_
