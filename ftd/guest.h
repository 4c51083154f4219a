// The protected VM as ftd sees it: a Domain plus "let it run for a while".
#ifndef FTSYNC_FTD_GUEST_H_
#define FTSYNC_FTD_GUEST_H_

#include <memory>
#include <string>

#include "ftsync/hypervisor.h"
#include "ftsync/replica.h"
#include "options.h"

namespace ftd {

class Guest {
 public:
  virtual ~Guest() = default;
  virtual ftsync::Domain* domain() = 0;
  // Lets the guest run for about `ms` milliseconds.
  virtual ftsync::Status RunFor(int ms) = 0;
  virtual std::string Describe() const = 0;
};

// The guest configured by `o` on the primary.
ftsync::Result<std::unique_ptr<Guest>> LaunchGuest(const Options& o);

// The guest restored on the backup from the replica's last complete epoch.
ftsync::Result<std::unique_ptr<Guest>> RestoreGuest(const Options& o, ftsync::ReplicaImage* replica);

}  // namespace ftd

#endif  // FTSYNC_FTD_GUEST_H_
