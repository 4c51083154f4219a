// The network buffer's rtnetlink side on this host, in a network namespace
// of its own (a forked child unshares one): IFB + ingress redirect of a
// veth's traffic, teardown, stale devices after a crash, and the clear
// error where the kernel lacks sch_plug. (Holding by the plug qdisc itself
// is tested in nested Xen's dom0, whose kernel has sch_plug:
// test/integration/xen/xl-ftsync-in-dom0.sh.)
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <mutex>

extern "C" {
#include <netlink/netlink.h>
#include <netlink/route/link.h>
}

#include "netbuf.h"

namespace ftd {
namespace {

struct RecordingLogger : ftsync::Logger {
  void Log(ftsync::LogLevel, std::string_view m) override {
    std::lock_guard<std::mutex> l(mu);
    lines += std::string(m) + "\n";
  }
  std::mutex mu;
  std::string lines;
};

// Runs `body` in a forked child inside a new network namespace; returns its
// error text ("" = passed), or "SKIP: ..." when namespaces are not allowed.
std::string InNetns(const std::function<std::string()>& body) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::string err;
    if (::unshare(CLONE_NEWNET) != 0) err = std::string("SKIP: unshare(CLONE_NEWNET): ") + std::strerror(errno);
    else err = body();
    (void)!::write(fds[1], err.data(), err.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (!WIFEXITED(st)) return "child crashed: " + out;
  return out;
}

uint64_t TxPackets(const std::string& dev) {
  nl_sock* s = nl_socket_alloc();
  nl_connect(s, NETLINK_ROUTE);
  rtnl_link* l = nullptr;
  uint64_t n = ~0ull;
  if (rtnl_link_get_kernel(s, 0, dev.c_str(), &l) == 0) {
    n = rtnl_link_get_stat(l, RTNL_LINK_TX_PACKETS);
    rtnl_link_put(l);
  }
  nl_socket_free(s);
  return n;
}

bool Exists(const std::string& dev) { return if_nametoindex(dev.c_str()) != 0; }

bool HasIngress(const std::string& dev) {
  std::string cmd = "tc qdisc show dev " + dev + " | grep -q ingress";
  return std::system(cmd.c_str()) == 0;
}

// Sends `n` frames of a local experimental ethertype out of `dev`.
std::string SendFrames(const std::string& dev, int n) {
  int fd = ::socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  if (fd < 0) return std::string("packet socket: ") + std::strerror(errno);
  sockaddr_ll a{};
  a.sll_family = AF_PACKET;
  a.sll_ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
  a.sll_halen = 6;
  std::memset(a.sll_addr, 0xff, 6);
  uint8_t f[60] = {};
  std::memset(f, 0xff, 6);
  f[6] = 0x02;
  f[12] = 0x88;
  f[13] = 0xb5;
  for (int i = 0; i < n; ++i) {
    f[14] = static_cast<uint8_t>(i);
    if (::sendto(fd, f, sizeof f, 0, reinterpret_cast<sockaddr*>(&a), sizeof a) != sizeof f) {
      ::close(fd);
      return std::string("sendto: ") + std::strerror(errno);
    }
  }
  ::close(fd);
  ::usleep(200000);
  return "";
}

std::string MakeVeth() {
  if (std::system("ip link set lo up && ip link add ftv0 type veth peer name ftv1 && ip link set ftv0 up && "
                  "ip link set ftv1 up") != 0)
    return "could not create the veth pair (ip link)";
  return "";
}

#define CHECK_OR_RETURN(cond, msg) \
  do {                             \
    if (!(cond)) return std::string(msg) + " [" #cond "]"; \
  } while (0)

void Expect(const std::string& r) {
  if (r.rfind("SKIP", 0) == 0) {
    WARN(r);
    return;
  }
  INFO(r);
  REQUIRE(r.empty());
}

TEST_CASE("netbuf: frames sent on a veth arrive through the IFB, teardown removes everything", "[netbuf][netns]") {
  Expect(InNetns([]() -> std::string {
    if (auto e = MakeVeth(); !e.empty()) return e;
    RecordingLogger log;
    NetBufferOptions o;
    o.plug = false;  // this host's kernel may lack sch_plug
    o.prefix = "ftsbt";
    auto nb = NetBuffer::Create({"ftv1"}, o, &log);
    if (!nb.ok()) return "create: " + nb.status().ToString();
    CHECK_OR_RETURN((*nb)->pairs().size() == 1, "one pair");
    const std::string ifb = (*nb)->pairs()[0].ifb;
    CHECK_OR_RETURN(ifb == "ftsbt" + std::to_string(if_nametoindex("ftv1")), "IFB named after the device's index");
    CHECK_OR_RETURN(HasIngress("ftv1"), "ingress qdisc on the device");
    uint64_t before = TxPackets(ifb);
    if (auto e = SendFrames("ftv0", 20); !e.empty()) return e;
    uint64_t after = TxPackets(ifb);
    if (after < before + 20)
      return "IFB passed " + std::to_string(after - before) + " frames, expected >= 20";
    // The phases run without a plug (they only count then).
    CHECK_OR_RETURN((*nb)->Setup().ok(), "setup");
    CHECK_OR_RETURN((*nb)->Postsuspend(0).ok(), "postsuspend");
    CHECK_OR_RETURN((*nb)->Commit(0).ok(), "commit");
    (*nb)->Teardown();
    CHECK_OR_RETURN((*nb)->counters().barriers == 2 && (*nb)->counters().releases == 1, "phase counts");
    nb->reset();
    CHECK_OR_RETURN(!Exists(ifb), "IFB removed");
    CHECK_OR_RETURN(!HasIngress("ftv1"), "ingress qdisc removed");
    if (auto e = SendFrames("ftv0", 5); !e.empty()) return "after teardown: " + e;
    CHECK_OR_RETURN(log.lines.find("network buffer removed") != std::string::npos, "teardown logged");
    return "";
  }));
}

TEST_CASE("netbuf: stale devices of a crashed ftd are cleaned at start, with a message", "[netbuf][netns]") {
  Expect(InNetns([]() -> std::string {
    if (auto e = MakeVeth(); !e.empty()) return e;
    NetBufferOptions o;
    o.plug = false;
    o.prefix = "ftsbt";
    // A "crashed ftd": a child sets the buffer up and dies without teardown.
    pid_t c = ::fork();
    if (c == 0) {
      auto nb = NetBuffer::Create({"ftv1"}, o, nullptr);
      if (!nb.ok()) ::_exit(1);
      (void)nb->release();  // no destructor: as after SIGKILL
      ::_exit(0);
    }
    int st = 0;
    ::waitpid(c, &st, 0);
    CHECK_OR_RETURN(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the crashing child set up its buffer");
    const std::string ifb = "ftsbt" + std::to_string(if_nametoindex("ftv1"));
    CHECK_OR_RETURN(Exists(ifb) && HasIngress("ftv1"), "the crash left its devices");
    // Another prefix is not touched.
    RecordingLogger log;
    auto none = NetBuffer::CleanStale("ftsbx", &log);
    CHECK_OR_RETURN(none.ok() && *none == 0 && Exists(ifb), "other prefixes untouched");
    // Create (as ftd does at start) cleans them, says so, and sets up anew.
    auto nb = NetBuffer::Create({"ftv1"}, o, &log);
    if (!nb.ok()) return "create after crash: " + nb.status().ToString();
    if (log.lines.find("removed a stale network buffer left by a crashed ftd: IFB " + ifb + " of ftv1 (ftd pid " +
                       std::to_string(c) + " is gone)") == std::string::npos)
      return "no clear message about the stale IFB; log was:\n" + log.lines;
    // A live owner's devices are not stale: a second buffer for the same
    // device is refused.
    auto again = NetBuffer::CleanStale("ftsbt", &log);
    CHECK_OR_RETURN(again.ok() && *again == 0 && Exists(ifb), "a live buffer is not stale");
    auto twice = NetBuffer::Create({"ftv1"}, o, &log);
    CHECK_OR_RETURN(!twice.ok(), "a second buffer of the same device is refused");
    CHECK_OR_RETURN(Exists(ifb) && HasIngress("ftv1"), "the refused second buffer removed nothing of the first");
    nb->reset();
    CHECK_OR_RETURN(!Exists(ifb) && !HasIngress("ftv1"), "teardown");
    return "";
  }));
}

TEST_CASE("netbuf: a kernel without sch_plug gets a clear error and nothing is left behind", "[netbuf][netns]") {
  Expect(InNetns([]() -> std::string {
    if (auto e = MakeVeth(); !e.empty()) return e;
    bool has_plug = std::system("ip link add ftsbprobe type ifb && tc qdisc add dev ftsbprobe root plug "
                                ">/dev/null 2>&1") == 0;
    (void)std::system("ip link del ftsbprobe >/dev/null 2>&1");
    RecordingLogger log;
    NetBufferOptions o;
    o.prefix = "ftsbt";
    auto nb = NetBuffer::Create({"ftv1"}, o, &log);
    const std::string ifb = "ftsbt" + std::to_string(if_nametoindex("ftv1"));
    if (has_plug) {
      if (!nb.ok()) return "kernel has sch_plug but create failed: " + nb.status().ToString();
      CHECK_OR_RETURN((*nb)->Setup().ok() && (*nb)->Postsuspend(0).ok() && (*nb)->Commit(0).ok(), "plug phases");
      (*nb)->Teardown();
      return "";
    }
    CHECK_OR_RETURN(!nb.ok(), "create must fail without sch_plug");
    std::string m = nb.status().ToString();
    if (m.find("sch_plug") == std::string::npos || m.find("ftv1") == std::string::npos)
      return "unclear error: " + m;
    CHECK_OR_RETURN(nb.status().code() == ftsync::Errc::kNotSupported, "kNotSupported");
    CHECK_OR_RETURN(!Exists(ifb) && !HasIngress("ftv1"), "nothing left behind");
    auto missing = NetBuffer::Create({"nosuchdev0"}, o, &log);
    CHECK_OR_RETURN(!missing.ok() && missing.status().ToString().find("no network device 'nosuchdev0'") !=
                                         std::string::npos,
                    "a missing device is named");
    return "";
  }));
}

TEST_CASE("netbuf: Xen vifs are found by domain id", "[netbuf]") {
  char tmpl[] = "/tmp/ftsync-vifs.XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  for (const char* n : {"vif3.1", "vif3.0", "vif3.0-emu", "vif31.0", "vif3.10", "eth0"})
    REQUIRE(::mkdir((dir + "/" + n).c_str(), 0755) == 0);
  REQUIRE(XenVifs(3, dir) == std::vector<std::string>{"vif3.0", "vif3.1", "vif3.10"});
  REQUIRE(XenVifs(31, dir) == std::vector<std::string>{"vif31.0"});
  REQUIRE(XenVifs(4, dir).empty());
  std::string rm = "rm -rf " + dir;
  REQUIRE(std::system(rm.c_str()) == 0);
}

}  // namespace
}  // namespace ftd
