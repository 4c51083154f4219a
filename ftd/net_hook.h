// `ftd primary --net-hook SCRIPT` (xl-ftsync -N): an extra program run at the
// network buffer's setup and teardown, after ftd has set up (and before it
// removes) the IFB, redirect and plug of each interface — the phases at which
// libxl runs its network-buffer script. Per interface, synchronously:
//
//   SCRIPT setup|teardown       environment: vifname=VIF IFB=IFB
//                               FTSYNC_DOMAIN=<domain>
//
// A failing setup (non-zero exit, or not executable) fails the session's
// setup with the script's exit status in the message; a failing teardown is
// logged.
#ifndef FTSYNC_FTD_NET_HOOK_H_
#define FTSYNC_FTD_NET_HOOK_H_

#include <string>
#include <utility>
#include <vector>

#include "ftsync/checkpoint_device.h"
#include "ftsync/logger.h"

namespace ftd {

// Runs `script phase` with `env` added to the environment; returns OK on exit
// status 0, else an error naming the script, phase and status.
ftsync::Status RunHook(const std::string& script, const std::string& phase,
                       const std::vector<std::pair<std::string, std::string>>& env);

class NetHook : public ftsync::CheckpointDevice {
 public:
  struct Vif {
    std::string vif, ifb;
  };
  NetHook(std::string script, std::string domain, std::vector<Vif> vifs, ftsync::Logger* log)
      : script_(std::move(script)), domain_(std::move(domain)), vifs_(std::move(vifs)), log_(log) {}
  std::string Name() const override { return "net-hook " + script_; }
  ftsync::Status Setup() override;
  ftsync::Status Postsuspend(uint64_t) override { return ftsync::Status::OK(); }
  ftsync::Status Preresume(uint64_t) override { return ftsync::Status::OK(); }
  ftsync::Status Commit(uint64_t) override { return ftsync::Status::OK(); }
  void Teardown() override;
  int runs() const { return runs_; }

 private:
  ftsync::Status Run(const std::string& phase);
  std::string script_, domain_;
  std::vector<Vif> vifs_;
  ftsync::Logger* log_;
  bool set_up_ = false;
  int runs_ = 0;
};

}  // namespace ftd

#endif  // FTSYNC_FTD_NET_HOOK_H_
