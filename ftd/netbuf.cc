#include "netbuf.h"

#include <dirent.h>
#include <linux/if_ether.h>
#include <linux/pkt_sched.h>
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

extern "C" {
#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/link.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/qdisc/plug.h>
#include <netlink/route/tc.h>
}

namespace ftd {
using ftsync::Errc;
using ftsync::LogLevel;
using ftsync::Status;

namespace {

constexpr uint32_t kIngressHandle = 0xffff0000u;  // ffff:
constexpr uint32_t kPlugHandle = 0x00010000u;     // 1:

Status NlError(int err, const std::string& what) {
  return Status(Errc::kIoError, what + ": " + nl_geterror(err));
}

void Log(ftsync::Logger* log, LogLevel level, const std::string& m) {
  if (log) log->Log(level, m);
}

void Modprobe(const char* module) {
  std::string cmd = std::string("modprobe -q ") + module + " >/dev/null 2>&1";
  (void)std::system(cmd.c_str());
}

bool ProcessAlive(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

// "ftsync netbuf pid=N dev=NAME" -> pid, dev.
bool ParseAlias(const char* alias, long* pid, std::string* dev) {
  if (!alias) return false;
  std::string a = alias;
  const std::string head = "ftsync netbuf pid=";
  if (a.rfind(head, 0) != 0) return false;
  char* end = nullptr;
  *pid = std::strtol(a.c_str() + head.size(), &end, 10);
  std::string rest = end ? end : "";
  if (rest.rfind(" dev=", 0) != 0) return false;
  *dev = rest.substr(5);
  return !dev->empty();
}

}  // namespace

struct NetBuffer::Nl {
  nl_sock* sock = nullptr;
  ~Nl() {
    if (sock) nl_socket_free(sock);
  }
  static ftsync::Result<std::unique_ptr<Nl>> Open() {
    auto nl = std::make_unique<Nl>();
    nl->sock = nl_socket_alloc();
    if (!nl->sock) return Status(Errc::kIoError, "netlink: out of memory");
    int e = nl_connect(nl->sock, NETLINK_ROUTE);
    if (e < 0) return NlError(e, "netlink: connect to rtnetlink");
    return nl;
  }
  // ifindex of `name`, 0 if there is no such device.
  int Index(const std::string& name) {
    rtnl_link* l = nullptr;
    if (rtnl_link_get_kernel(sock, 0, name.c_str(), &l) < 0) return 0;
    int i = rtnl_link_get_ifindex(l);
    rtnl_link_put(l);
    return i;
  }
  std::string Alias(const std::string& name) {
    rtnl_link* l = nullptr;
    if (rtnl_link_get_kernel(sock, 0, name.c_str(), &l) < 0) return "";
    const char* a = rtnl_link_get_ifalias(l);
    std::string s = a ? a : "";
    rtnl_link_put(l);
    return s;
  }
  int DeleteIngress(int ifindex) {
    rtnl_qdisc* q = rtnl_qdisc_alloc();
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
    rtnl_tc_set_handle(TC_CAST(q), kIngressHandle);
    rtnl_tc_set_kind(TC_CAST(q), "ingress");
    int e = rtnl_qdisc_delete(sock, q);
    rtnl_qdisc_put(q);
    return e;
  }
  int DeleteLink(const std::string& name) {
    rtnl_link* l = rtnl_link_alloc();
    rtnl_link_set_name(l, name.c_str());
    int e = rtnl_link_delete(sock, l);
    rtnl_link_put(l);
    return e;
  }
};

NetBuffer::NetBuffer(NetBufferOptions o, ftsync::Logger* log) : o_(std::move(o)), log_(log), schedule_(this) {}

NetBuffer::~NetBuffer() { Destroy(); }

ftsync::Result<std::unique_ptr<NetBuffer>> NetBuffer::Create(const std::vector<std::string>& devices,
                                                            NetBufferOptions options, ftsync::Logger* log) {
  auto stale = CleanStale(options.prefix, log);
  if (!stale.ok()) return stale.status();
  std::unique_ptr<NetBuffer> nb(new NetBuffer(std::move(options), log));
  auto nl = Nl::Open();
  if (!nl.ok()) return nl.status();
  nb->nl_ = std::move(nl).value();
  for (const std::string& d : devices) {
    Status s = nb->Add(d);
    if (!s.ok()) {
      nb->Destroy();
      return s.Annotate("network buffer for " + d);
    }
  }
  return nb;
}

Status NetBuffer::Add(const std::string& dev) {
  Nl& nl = *nl_;
  Pair p;
  p.dev = dev;
  p.dev_index = nl.Index(dev);
  if (!p.dev_index) return Status(Errc::kNotFound, "no network device '" + dev + "'");
  p.ifb = o_.prefix + std::to_string(p.dev_index);
  if (p.ifb.size() >= IFNAMSIZ) return Status(Errc::kInvalidArgument, "IFB name '" + p.ifb + "' is too long");
  if (nl.Index(p.ifb)) {
    long pid = 0;
    std::string owner;
    if (ParseAlias(nl.Alias(p.ifb).c_str(), &pid, &owner) && ProcessAlive(pid) && pid != ::getpid())
      return Status(Errc::kBusy, "'" + dev + "' is already buffered by ftd pid " + std::to_string(pid) + " (" +
                                     p.ifb + "): is this domain protected twice?");
    return Status(Errc::kBusy, "'" + p.ifb + "' exists and could not be cleaned");
  }
  // 1. The IFB, up, with its owner in its alias.
  rtnl_link* l = rtnl_link_alloc();
  rtnl_link_set_name(l, p.ifb.c_str());
  rtnl_link_set_type(l, "ifb");
  int e = rtnl_link_add(nl.sock, l, NLM_F_CREATE | NLM_F_EXCL);
  if (e == -NLE_OPNOTSUPP || e == -NLE_OBJ_NOTFOUND || e == -NLE_NOATTR) {
    Modprobe("ifb");
    e = rtnl_link_add(nl.sock, l, NLM_F_CREATE | NLM_F_EXCL);
  }
  rtnl_link_put(l);
  if (e < 0) {
    Status s = NlError(e, "create IFB device " + p.ifb);
    return e == -NLE_OPNOTSUPP || e == -NLE_OBJ_NOTFOUND
               ? Status(Errc::kNotSupported, s.context() + " (the kernel needs IFB devices: CONFIG_IFB, modprobe ifb)")
               : s;
  }
  pairs_.push_back(p);  // from here on Destroy removes it
  Pair& q = pairs_.back();
  q.ifb_index = nl.Index(q.ifb);
  if (!q.ifb_index) return Status(Errc::kIoError, "IFB device " + q.ifb + " vanished after creation");
  {
    rtnl_link* cur = nullptr;
    e = rtnl_link_get_kernel(nl.sock, q.ifb_index, nullptr, &cur);
    if (e < 0) return NlError(e, "read IFB device " + q.ifb);
    rtnl_link* change = rtnl_link_alloc();
    rtnl_link_set_flags(change, IFF_UP);
    std::string alias = "ftsync netbuf pid=" + std::to_string(::getpid()) + " dev=" + dev;
    rtnl_link_set_ifalias(change, alias.c_str());
    e = rtnl_link_change(nl.sock, cur, change, 0);
    rtnl_link_put(change);
    rtnl_link_put(cur);
    if (e < 0) return NlError(e, "bring IFB device " + q.ifb + " up");
  }
  // 2. The plug qdisc on the IFB, releasing until Setup().
  if (o_.plug) {
    auto add_plug = [&] {
      rtnl_qdisc* qd = rtnl_qdisc_alloc();
      rtnl_tc_set_ifindex(TC_CAST(qd), q.ifb_index);
      rtnl_tc_set_parent(TC_CAST(qd), TC_H_ROOT);
      rtnl_tc_set_handle(TC_CAST(qd), kPlugHandle);
      rtnl_tc_set_kind(TC_CAST(qd), "plug");
      rtnl_qdisc_plug_set_limit(qd, o_.plug_limit_bytes);
      int r = rtnl_qdisc_add(nl.sock, qd, NLM_F_CREATE | NLM_F_REPLACE);
      rtnl_qdisc_put(qd);
      return r;
    };
    e = add_plug();
    if (e == -NLE_OBJ_NOTFOUND) {
      Modprobe("sch_plug");
      e = add_plug();
    }
    if (e == -NLE_OBJ_NOTFOUND)
      return Status(Errc::kNotSupported,
                    "this kernel has no 'plug' qdisc (sch_plug: \"Specified qdisc kind is unknown\"): network "
                    "buffering needs CONFIG_NET_SCH_PLUG (modprobe sch_plug); without it output commit is "
                    "impossible (--no-net-buffer replicates WITHOUT holding output: UNSAFE)");
    if (e < 0) return NlError(e, "add plug qdisc on " + q.ifb);
    FTSYNC_RETURN_IF_ERROR(PlugCommand(2, "release indefinitely"));
  }
  // 3. Redirect everything the device receives (what the guest sends) to the IFB.
  {
    rtnl_qdisc* qd = rtnl_qdisc_alloc();
    rtnl_tc_set_ifindex(TC_CAST(qd), q.dev_index);
    rtnl_tc_set_parent(TC_CAST(qd), TC_H_INGRESS);
    rtnl_tc_set_handle(TC_CAST(qd), kIngressHandle);
    rtnl_tc_set_kind(TC_CAST(qd), "ingress");
    e = rtnl_qdisc_add(nl.sock, qd, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_qdisc_put(qd);
    if (e == -NLE_EXIST)
      return Status(Errc::kBusy, dev + " already has an ingress qdisc (something else filters its traffic); "
                                      "ftd does not replace it");
    if (e < 0) return NlError(e, "add ingress qdisc on " + dev);
  }
  {
    rtnl_cls* cls = rtnl_cls_alloc();
    rtnl_tc_set_ifindex(TC_CAST(cls), q.dev_index);
    rtnl_tc_set_parent(TC_CAST(cls), kIngressHandle);
    rtnl_tc_set_kind(TC_CAST(cls), "u32");
    rtnl_cls_set_protocol(cls, ETH_P_ALL);
    rtnl_cls_set_prio(cls, 1);
    rtnl_u32_add_key_uint32(cls, 0, 0, 0, 0);  // match everything
    rtnl_u32_set_cls_terminal(cls);
    rtnl_act* act = rtnl_act_alloc();
    rtnl_tc_set_kind(TC_CAST(act), "mirred");
    rtnl_mirred_set_action(act, TCA_EGRESS_REDIR);
    rtnl_mirred_set_policy(act, TC_ACT_STOLEN);
    rtnl_mirred_set_ifindex(act, static_cast<uint32_t>(q.ifb_index));
    rtnl_u32_add_action(cls, act);
    e = rtnl_cls_add(nl.sock, cls, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_act_put(act);
    rtnl_cls_put(cls);
    if (e < 0) return NlError(e, "add redirect filter " + dev + " -> " + q.ifb);
  }
  Log(log_, LogLevel::kInfo, "network buffer: " + dev + " -> " + q.ifb + (o_.plug ? " (plug)" : " (no plug)"));
  return Status::OK();
}

Status NetBuffer::PlugCommand(int which, const char* what) {
  if (!o_.plug) return Status::OK();
  for (const Pair& p : pairs_) {
    if (!p.ifb_index) continue;
    rtnl_qdisc* qd = rtnl_qdisc_alloc();
    rtnl_tc_set_ifindex(TC_CAST(qd), p.ifb_index);
    rtnl_tc_set_parent(TC_CAST(qd), TC_H_ROOT);
    rtnl_tc_set_handle(TC_CAST(qd), kPlugHandle);
    rtnl_tc_set_kind(TC_CAST(qd), "plug");
    if (which == 0) rtnl_qdisc_plug_buffer(qd);
    else if (which == 1) rtnl_qdisc_plug_release_one(qd);
    else rtnl_qdisc_plug_release_indefinite(qd);
    int e = rtnl_qdisc_add(nl_->sock, qd, 0);  // existing qdisc: a change
    rtnl_qdisc_put(qd);
    if (e < 0) return NlError(e, std::string("plug qdisc on ") + p.ifb + ": " + what);
  }
  return Status::OK();
}

Status NetBuffer::Buffer() {
  ++c_.barriers;
  return PlugCommand(0, "buffer");
}
Status NetBuffer::ReleaseOne() {
  ++c_.releases;
  return PlugCommand(1, "release one");
}
Status NetBuffer::ReleaseIndefinite() { return PlugCommand(2, "release indefinitely"); }

Status NetBuffer::Setup() {
  if (destroyed_) return Status(Errc::kFailedPrecondition, "network buffer already removed");
  return schedule_.Start();
}
Status NetBuffer::Postsuspend(uint64_t epoch) { return schedule_.Postsuspend(epoch); }
Status NetBuffer::Commit(uint64_t epoch) { return schedule_.Commit(epoch); }
void NetBuffer::Teardown() {
  if (destroyed_) return;
  Status s = schedule_.Stop();
  if (!s.ok()) Log(log_, LogLevel::kWarning, "network buffer teardown: " + s.ToString());
}

void NetBuffer::Destroy() {
  if (destroyed_ || !nl_) return;
  destroyed_ = true;
  for (auto it = pairs_.rbegin(); it != pairs_.rend(); ++it) {
    // The ingress qdisc goes first (with its filter), so nothing is
    // redirected into a device that is going away.
    if (nl_->Index(it->dev) == it->dev_index) {
      int e = nl_->DeleteIngress(it->dev_index);
      if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV && e != -NLE_INVAL)
        Log(log_, LogLevel::kWarning, "remove ingress qdisc of " + it->dev + ": " + nl_geterror(e));
    }
    int e = nl_->DeleteLink(it->ifb);
    if (e < 0 && e != -NLE_OBJ_NOTFOUND && e != -NLE_NODEV)
      Log(log_, LogLevel::kWarning, "remove IFB " + it->ifb + ": " + nl_geterror(e));
  }
  Log(log_, LogLevel::kInfo, "network buffer removed (" + std::to_string(pairs_.size()) + " device(s))");
}

ftsync::Result<int> NetBuffer::CleanStale(const std::string& prefix, ftsync::Logger* log) {
  auto nlr = Nl::Open();
  if (!nlr.ok()) return nlr.status();
  Nl& nl = **nlr;
  nl_cache* cache = nullptr;
  int e = rtnl_link_alloc_cache(nl.sock, AF_UNSPEC, &cache);
  if (e < 0) return NlError(e, "list network devices");
  struct Victim {
    std::string ifb, dev;
    long pid;
    bool owned;
  };
  std::vector<Victim> victims;
  for (nl_object* o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
    rtnl_link* l = reinterpret_cast<rtnl_link*>(o);
    const char* name = rtnl_link_get_name(l);
    const char* type = rtnl_link_get_type(l);
    if (!name || std::string(name).rfind(prefix, 0) != 0) continue;
    if (!type || std::string(type) != "ifb") continue;
    long pid = 0;
    std::string dev;
    bool owned = ParseAlias(rtnl_link_get_ifalias(l), &pid, &dev);
    if (owned && (pid == ::getpid() || ProcessAlive(pid))) continue;  // a live ftd's
    victims.push_back({name, dev, pid, owned});
  }
  nl_cache_free(cache);
  for (const Victim& v : victims) {
    if (!v.dev.empty()) {
      int idx = nl.Index(v.dev);
      if (idx) (void)nl.DeleteIngress(idx);
    }
    e = nl.DeleteLink(v.ifb);
    if (e < 0 && e != -NLE_OBJ_NOTFOUND) return NlError(e, "remove stale IFB " + v.ifb);
    Log(log, LogLevel::kWarning,
        "removed a stale network buffer left by a crashed ftd: IFB " + v.ifb +
            (v.owned ? " of " + v.dev + " (ftd pid " + std::to_string(v.pid) + " is gone)" : " (no owner recorded)") +
            (v.dev.empty() ? "" : ", and the ingress redirect on " + v.dev));
  }
  return static_cast<int>(victims.size());
}

std::vector<std::string> XenVifs(uint32_t domid, const std::string& sys_class_net) {
  std::vector<std::pair<long, std::string>> found;
  const std::string head = "vif" + std::to_string(domid) + ".";
  if (DIR* d = ::opendir(sys_class_net.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n.rfind(head, 0) != 0) continue;
      std::string rest = n.substr(head.size());
      // vifD.N only: the HVM emulated twin vifD.N-emu is not the guest's PV path.
      if (rest.empty() || rest.find_first_not_of("0123456789") != std::string::npos) continue;
      found.emplace_back(std::strtol(rest.c_str(), nullptr, 10), n);
    }
    ::closedir(d);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

}  // namespace ftd
