// The protected VM as ftd sees it: a Domain plus "let it run for a while".
#ifndef FTSYNC_FTD_GUEST_H_
#define FTSYNC_FTD_GUEST_H_

#include <memory>
#include <string>

#include <vector>

#include "connection.h"
#include "ftsync/checkpoint_device.h"
#include "ftsync/hypervisor.h"
#include "ftsync/replica.h"
#include "log.h"
#include "options.h"

namespace ftd {

class Guest {
 public:
  virtual ~Guest() = default;
  virtual ftsync::Domain* domain() = 0;
  // Lets the guest run for about `ms` milliseconds.
  virtual ftsync::Status RunFor(int ms) = 0;
  virtual std::string Describe() const = 0;
  // Output-commit devices to add to each session's Checkpointer.
  virtual std::vector<ftsync::CheckpointDevice*> devices() { return {}; }
  // After a takeover: make the network find the guest here.
  virtual ftsync::Status Announce() { return ftsync::Status::OK(); }
};

struct GuestContext {
  asio::io_context* io;
  StderrLogger* log;
};

// The guest configured by `o` on the primary.
ftsync::Result<std::unique_ptr<Guest>> LaunchGuest(const Options& o, GuestContext ctx);

// The guest restored on the backup from the replica's last complete epoch.
ftsync::Result<std::unique_ptr<Guest>> RestoreGuest(const Options& o, GuestContext ctx,
                                                   ftsync::ReplicaImage* replica);

// The QEMU guest (qemu_guest.cc).
ftsync::Result<std::unique_ptr<Guest>> LaunchQemuGuest(const Options& o, GuestContext ctx);
ftsync::Result<std::unique_ptr<Guest>> RestoreQemuGuest(const Options& o, GuestContext ctx,
                                                       ftsync::ReplicaImage* replica);

// The Xen guest (xen_guest.cc).
ftsync::Result<std::unique_ptr<Guest>> LaunchXenGuest(const Options& o, GuestContext ctx);
ftsync::Result<std::unique_ptr<Guest>> RestoreXenGuest(const Options& o, GuestContext ctx,
                                                      ftsync::ReplicaImage* replica);

}  // namespace ftd

#endif  // FTSYNC_FTD_GUEST_H_
