// Network output commit on Xen (and any Linux host): ftd holds a guest's
// outgoing packets itself, with no user script, over rtnetlink (libnl-route-3):
//
//   for each guest interface VIF (Xen: vif<domid>.<n> in dom0)
//     an IFB device        ftsb<ifindex of VIF>, its ifalias
//                          "ftsync netbuf pid=<ftd pid> dev=<VIF>"
//     VIF's ingress        qdisc ffff: with a u32 match-all filter whose
//                          action is "mirred egress redirect" to the IFB
//                          (ingress of the vif = what the guest sends)
//     the IFB's root       a `plug` qdisc (sch_plug) that holds the packets
//
// The plug is driven by PlugSchedule (plug_schedule.h) from the checkpoint
// device phases: Setup starts holding, Postsuspend inserts a barrier, Commit
// (after the backup's ACK) releases, Teardown lets everything through.
//
// Teardown removes the filter, the ingress qdisc and the IFB. After a crash
// they are left behind: CleanStale (run by Create) finds IFBs named ftsb*
// whose owner process is gone (or that carry no owner), removes them and the
// ingress qdisc of the device they served, and logs what it removed. An IFB
// of a live ftd for the same device is an error (the device is protected
// already).
#ifndef FTSYNC_FTD_NETBUF_H_
#define FTSYNC_FTD_NETBUF_H_

#include <memory>
#include <string>
#include <vector>

#include "ftsync/checkpoint_device.h"
#include "ftsync/logger.h"
#include "ftsync/status.h"
#include "plug_schedule.h"

namespace ftd {

struct NetBufferOptions {
  // Without the plug qdisc only the IFB and the redirect are set up (for
  // hosts whose kernel lacks sch_plug: tests of the redirect path). Then
  // packets are NOT held, and the device phases only count.
  bool plug = true;
  // sch_plug's byte limit per qdisc (packets above it are dropped, as a
  // full queue drops them).
  int plug_limit_bytes = 8 << 20;
  // Name prefix of the IFB devices (tests use their own).
  std::string prefix = "ftsb";
};

struct NetBufferCounters {
  uint64_t barriers = 0, releases = 0;
};

class NetBuffer : public ftsync::CheckpointDevice, private PlugControl {
 public:
  // Cleans stale devices, then sets up an IFB, the redirect and (unless
  // options.plug is false) a plug qdisc for each of `devices`. The qdisc
  // starts releasing (a guest without a backup runs unprotected); Setup()
  // starts holding. On error everything created so far is removed.
  static ftsync::Result<std::unique_ptr<NetBuffer>> Create(const std::vector<std::string>& devices,
                                                           NetBufferOptions options, ftsync::Logger* log);
  // Removes what Create set up (Destroy()).
  ~NetBuffer() override;

  // Removes IFBs named PREFIX* whose owner is not a live process, with the
  // ingress qdisc of the device each served; logs each one. Returns how
  // many were removed.
  static ftsync::Result<int> CleanStale(const std::string& prefix, ftsync::Logger* log);

  // CheckpointDevice (phases as in checkpoint_device.h).
  std::string Name() const override { return "netbuf"; }
  ftsync::Status Setup() override;
  ftsync::Status Postsuspend(uint64_t epoch) override;
  ftsync::Status Preresume(uint64_t epoch) override { return ftsync::Status::OK(); }
  ftsync::Status Commit(uint64_t epoch) override;
  void Teardown() override;

  // Removes the filters, ingress qdiscs and IFBs. Idempotent.
  void Destroy();

  struct Pair {
    std::string dev, ifb;
    int dev_index = 0, ifb_index = 0;
  };
  const std::vector<Pair>& pairs() const { return pairs_; }
  NetBufferCounters counters() const { return c_; }

 private:
  struct Nl;
  NetBuffer(NetBufferOptions o, ftsync::Logger* log);
  ftsync::Status Add(const std::string& dev);
  ftsync::Status PlugCommand(int which, const char* what);
  ftsync::Status Buffer() override;
  ftsync::Status ReleaseOne() override;
  ftsync::Status ReleaseIndefinite() override;

  NetBufferOptions o_;
  ftsync::Logger* log_;
  std::unique_ptr<Nl> nl_;
  std::vector<Pair> pairs_;
  PlugSchedule schedule_;
  NetBufferCounters c_;
  bool destroyed_ = false;
};

// The network interfaces of Xen domain `domid` in dom0 (vif<domid>.<n>, in
// order of n), from /sys/class/net.
std::vector<std::string> XenVifs(uint32_t domid, const std::string& sys_class_net = "/sys/class/net");

}  // namespace ftd

#endif  // FTSYNC_FTD_NETBUF_H_
