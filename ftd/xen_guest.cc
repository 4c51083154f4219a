// The Xen guest of ftd: a running domain opened with XenDomain (log-dirty,
// foreign maps, pause/unpause; libftsync/include/ftsync/xen.h), its network
// output held by a NetBuffer on its vifs, an optional --net-hook. On the
// backup the domain is created from the replica at takeover by libftsync's
// RestoreXenDomainFromReplica.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "ftsync/xen.h"
#include "guest.h"
#include "net_hook.h"
#include "netbuf.h"

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

namespace {

// Runs a command, returns its first output line (trimmed) or an error.
ftsync::Result<std::string> FirstLine(const std::string& cmd) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return Status(Errc::kIoError, "cannot run '" + cmd + "'");
  char buf[512] = {0};
  std::string line = std::fgets(buf, sizeof buf, p) ? buf : "";
  int st = ::pclose(p);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r' || line.back() == ' ')) line.pop_back();
  if (st != 0) return Status(Errc::kNotFound, "'" + cmd + "' failed: " + line);
  return line;
}

bool AllDigits(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

// NAME or DOMID -> domid (names through `xl domid`).
ftsync::Result<uint32_t> ResolveDomain(const std::string& d) {
  if (AllDigits(d)) return static_cast<uint32_t>(std::stoul(d));
  for (char c : d)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return Status(Errc::kInvalidArgument, "'" + d + "' is not a domain name or id");
  auto line = FirstLine("xl domid " + d);
  if (!line.ok()) return Status(Errc::kNotFound, "no Xen domain '" + d + "' (" + line.status().context() + ")");
  if (!AllDigits(*line)) return Status(Errc::kNotFound, "no Xen domain '" + d + "' (xl domid: " + *line + ")");
  return static_cast<uint32_t>(std::stoul(*line));
}

// Whether domain `domid` still exists (xenstore's /local/domain/DOMID), at
// most once a second; true when it cannot be told.
class Liveness {
 public:
  explicit Liveness(uint32_t domid) : domid_(domid) {}
  bool Alive() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::seconds(1)) return alive_;
    last_ = now;
    std::string cmd = "xenstore-exists /local/domain/" + std::to_string(domid_) + " >/dev/null 2>&1";
    int r = std::system(cmd.c_str());
    if (WIFEXITED(r) && WEXITSTATUS(r) == 1) alive_ = false;  // 127: no xenstore tools: cannot tell
    return alive_;
  }

 private:
  uint32_t domid_;
  bool alive_ = true;
  std::chrono::steady_clock::time_point last_{};
};

class XenGuest : public Guest {
 public:
  XenGuest(const Options& o, GuestContext ctx) : o_(o), ctx_(ctx) {}
  ~XenGuest() override {
    // The Checkpointer's teardown has run; the devices go before the domain.
    hook_.reset();
    netbuf_.reset();
    domain_.reset();
  }

  Status Launch() {
    auto id = ResolveDomain(o_.domain);
    if (!id.ok()) return id.status();
    domid_ = *id;
    live_ = std::make_unique<Liveness>(domid_);
    ftsync::XenDomainOptions xo;
    xo.calibrate_rounds = o_.xen_calibrate;
    xo.suspend_timeout_ms = o_.xen_suspend_timeout_ms;
    xo.suspend = o_.xen_suspend == "pause" ? ftsync::XenSuspend::kPause : ftsync::XenSuspend::kCooperative;
    if (o_.xen_suspend == "pause")
      ctx_.log->Warn("--xen-suspend pause: checkpoints pause the domain; the backup cannot restore such a replica");
    auto d = ftsync::XenDomain::Open(domid_, xo);
    if (!d.ok()) return d.status().Annotate("open Xen domain " + o_.domain);
    domain_ = std::move(d).value();
    std::vector<std::string> vifs = XenVifs(domid_);
    if (o_.no_net_buffer) {
      ctx_.log->Warn("--no-net-buffer: the domain's packets leave before their epoch is safe (UNSAFE)");
    } else if (vifs.empty()) {
      ctx_.log->Info("domain " + std::to_string(domid_) + " has no network interface: no network buffer needed");
    } else {
      auto nb = NetBuffer::Create(vifs, NetBufferOptions{}, ctx_.log);
      if (!nb.ok()) return nb.status();
      netbuf_ = std::move(nb).value();
    }
    if (!o_.net_hook.empty()) {
      std::vector<NetHook::Vif> hv;
      if (netbuf_)
        for (const auto& p : netbuf_->pairs()) hv.push_back({p.dev, p.ifb});
      if (hv.empty()) ctx_.log->Warn("--net-hook " + o_.net_hook + ": the domain has no vif, the hook never runs");
      hook_ = std::make_unique<NetHook>(o_.net_hook, o_.domain, hv, ctx_.log);
    }
    return Status::OK();
  }

  Status Restore(ftsync::ReplicaImage* replica) {
    ftsync::XenRestoreOptions ro;
    ro.name = o_.domain;
    ro.xl_config = o_.xen_config;
    ro.paused = false;
    auto id = ftsync::RestoreXenDomainFromReplica(replica->dir(), ro);
    if (!id.ok()) return id.status();
    domid_ = *id;
    live_ = std::make_unique<Liveness>(domid_);
    restored_ = true;
    return Status::OK();
  }

  ftsync::Domain* domain() override { return domain_.get(); }

  Status RunFor(int ms) override {
    if (ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    if (live_ && !live_->Alive())
      return Status(Errc::kPeerGone, "Xen domain " + std::to_string(domid_) + " (" + o_.domain + ") is gone");
    return Status::OK();
  }

  std::string Describe() const override {
    std::string s = "xen domain " + std::to_string(domid_) + " (" + o_.domain + ")";
    if (restored_) return s + ", restored from the replica";
    if (domain_) s += ", " + std::to_string(domain_->FrameCount()) + " frames";
    if (netbuf_) {
      s += ", buffered:";
      for (const auto& p : netbuf_->pairs()) s += " " + p.dev + "->" + p.ifb;
    }
    return s;
  }

  std::vector<ftsync::CheckpointDevice*> devices() override {
    std::vector<ftsync::CheckpointDevice*> d;
    if (netbuf_) d.push_back(netbuf_.get());
    if (hook_) d.push_back(hook_.get());  // after the buffer: it sees it set up, and goes first at teardown
    return d;
  }

 private:
  Options o_;
  GuestContext ctx_;
  uint32_t domid_ = 0;
  bool restored_ = false;
  std::unique_ptr<ftsync::XenDomain> domain_;
  std::unique_ptr<NetBuffer> netbuf_;
  std::unique_ptr<NetHook> hook_;
  std::unique_ptr<Liveness> live_;
};

}  // namespace

ftsync::Result<std::unique_ptr<Guest>> LaunchXenGuest(const Options& o, GuestContext ctx) {
  auto g = std::make_unique<XenGuest>(o, ctx);
  FTSYNC_RETURN_IF_ERROR(g->Launch());
  return std::unique_ptr<Guest>(std::move(g));
}

ftsync::Result<std::unique_ptr<Guest>> RestoreXenGuest(const Options& o, GuestContext ctx,
                                                      ftsync::ReplicaImage* replica) {
  auto g = std::make_unique<XenGuest>(o, ctx);
  FTSYNC_RETURN_IF_ERROR(g->Restore(replica).Annotate("restore the Xen domain from the replica"));
  return std::unique_ptr<Guest>(std::move(g));
}

}  // namespace ftd
