// xl-ftsync's flags: each one reaches ftd, each refusal is clear.
#include <catch2/catch.hpp>

#include <algorithm>

#include "xl_args.h"

namespace xlft {
namespace {

ftsync::Result<XlCommand> P(std::vector<std::string> a) {
  a.insert(a.begin(), "xl-ftsync");
  return ParseXlArgs(a);
}

std::string Err(std::vector<std::string> a) {
  auto r = P(std::move(a));
  return r.ok() ? "" : r.status().context();
}

bool Has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

bool HasPair(const std::vector<std::string>& v, const std::string& k, const std::string& val) {
  for (size_t i = 0; i + 1 < v.size(); ++i)
    if (v[i] == k && v[i + 1] == val) return true;
  return false;
}

const std::string kPlain = "--insecure-plaintext";

TEST_CASE("xl-ftsync: defaults as xl remus, and the ftd command line", "[xl]") {
  auto c = P({kPlain, "guest1", "backuphost"});
  REQUIRE(c.ok());
  CHECK(c->verb == Verb::kProtect);
  CHECK(c->domain == "guest1");
  CHECK(c->host == "backuphost");
  CHECK(c->interval_ms == 200);
  CHECK(c->ssh == "ssh");
  auto v = FtdPrimaryArgv(*c, "/usr/bin/ftd");
  CHECK(v[0] == "/usr/bin/ftd");
  CHECK(v[1] == "primary");
  CHECK(HasPair(v, "--interval", "200"));
  CHECK(HasPair(v, "--domain", "guest1"));
  CHECK(HasPair(v, "--hypervisor", "xen"));
  CHECK(HasPair(v, "--peer", "backuphost:7788"));
  CHECK(HasPair(v, "--control", "/run/ftsync/xl-guest1-primary.sock"));
  CHECK(Has(v, "--insecure-plaintext"));
  CHECK(!Has(v, "--no-net-buffer"));
  CHECK(!Has(v, "--blackhole"));
  CHECK(!Has(v, "--no-compression"));
  CHECK(ReceiveCommand(*c) ==
        "ssh backuphost xl-ftsync receive --port 7788 --run-dir /run/ftsync --hypervisor xen --insecure-plaintext "
        "--replica-dir /var/lib/ftsync/guest1 guest1");
}

TEST_CASE("xl-ftsync: every flag reaches ftd", "[xl]") {
  auto c = P({kPlain, "-i", "50", "-u", "-s", "my ssh -p 2222", "-e", "-N", "/etc/hook", "dom", "h"});
  REQUIRE(c.ok());
  auto v = FtdPrimaryArgv(*c, "ftd");
  CHECK(HasPair(v, "--interval", "50"));
  CHECK(Has(v, "--no-compression"));
  CHECK(HasPair(v, "--net-hook", "/etc/hook"));
  std::string rc = ReceiveCommand(*c);
  CHECK(rc.rfind("my ssh -p 2222 h xl-ftsync receive ", 0) == 0);
  CHECK(rc.find(" -e ") != std::string::npos);
  auto r = P({"receive", "-e", kPlain, "--port", "9000", "dom"});
  REQUIRE(r.ok());
  auto bv = FtdBackupArgv(*r, "ftd");
  CHECK(bv[1] == "backup");
  CHECK(Has(bv, "--exit-after-promote"));
  CHECK(HasPair(bv, "--listen", "0.0.0.0:9000"));
  CHECK(HasPair(bv, "--domain", "dom"));
  CHECK(HasPair(bv, "--replica-dir", "/var/lib/ftsync/dom"));
  CHECK(HasPair(bv, "--control", "/run/ftsync/xl-dom-backup.sock"));
  auto r2 = P({"receive", kPlain, "dom"});
  REQUIRE(r2.ok());
  CHECK(!Has(FtdBackupArgv(*r2, "ftd"), "--exit-after-promote"));
  // Clustered flags, values glued to their flag, as getopt allows.
  auto g = P({kPlain, "-Fbn", "-i100", "dom", "h"});
  REQUIRE(g.ok());
  auto gv = FtdPrimaryArgv(*g, "ftd");
  CHECK(Has(gv, "--blackhole"));
  CHECK(Has(gv, "--no-net-buffer"));
  CHECK(!HasPair(gv, "--peer", "h:7788"));
  CHECK(HasPair(gv, "--interval", "100"));
  auto d = P({kPlain, "-F", "-d", "dom", "h"});
  REQUIRE(d.ok());
  CHECK(d->no_disk);
  auto t = P({"--tls-ca", "ca", "--tls-cert", "c", "--tls-key", "k", "dom", "h"});
  REQUIRE(t.ok());
  CHECK(HasPair(FtdPrimaryArgv(*t, "ftd"), "--tls-ca", "ca"));
  CHECK(ReceiveCommand(*t).find("--tls-key k") != std::string::npos);
}

TEST_CASE("xl-ftsync: unsafe flags need -F, COLO is refused, usage errors are clear", "[xl]") {
  CHECK(Err({kPlain, "-b", "d", "h"}).find("-b weaken protection and need -F") != std::string::npos);
  CHECK(Err({kPlain, "-n", "d", "h"}).find("need -F") != std::string::npos);
  CHECK(Err({kPlain, "-n", "d", "h"}).find("-n lets output leave before the backup has it") != std::string::npos);
  CHECK(Err({kPlain, "-d", "d", "h"}).find("-d leaves the domain's disks unreplicated") != std::string::npos);
  CHECK(Err({kPlain, "-b", "-n", "-d", "d", "h"}).find("option(s) -b -n -d") != std::string::npos);
  CHECK(Err({kPlain, "-c", "d", "h"}).find("COLO") != std::string::npos);
  CHECK(Err({kPlain, "-c", "d", "h"}).find("not supported") != std::string::npos);
  CHECK(Err({kPlain, "-p", "d", "h"}).find("-c/-p (COLO) are not supported") != std::string::npos);
  CHECK(Err({kPlain, "-F", "-n", "-N", "s", "d", "h"}).find("-n turns the network buffer off") != std::string::npos);
  CHECK(Err({kPlain, "-i", "5", "d", "h"}) == "-i: '5' is not an interval in ms (10..10000)");
  CHECK(Err({kPlain, "-i", "x", "d", "h"}).find("not an interval") != std::string::npos);
  CHECK(Err({kPlain, "-i"}) == "option -i needs a value");
  CHECK(Err({kPlain, "-x", "d", "h"}) == "unknown option -x (see xl-ftsync --help)");
  CHECK(Err({kPlain, "--bogus", "d", "h"}) == "unknown option '--bogus' (see xl-ftsync --help)");
  CHECK(Err({kPlain}) == "missing DOMAIN and HOST (usage: xl-ftsync [options] DOMAIN HOST)");
  CHECK(Err({kPlain, "d"}) == "missing HOST after DOMAIN 'd'");
  CHECK(Err({kPlain, "d", "h", "x"}).find("too many arguments") != std::string::npos);
  CHECK(Err({"d", "h"}).find("needs mutual TLS") != std::string::npos);
  CHECK(Err({kPlain, "--tls-ca", "x", "d", "h"}).find("exclude each other") != std::string::npos);
  CHECK(Err({kPlain, "--port", "0", "d", "h"}).find("not a port number") != std::string::npos);
  CHECK(Err({kPlain, "--hypervisor", "kvm", "d", "h"}).find("xen or fake") != std::string::npos);
  CHECK(Err({kPlain, "d;rm", "h"}).find("is not a domain name") != std::string::npos);
  CHECK(Err({"status"}) == "missing DOMAIN");
  CHECK(Err({"status", "-F", "d"}).find("status takes only DOMAIN") != std::string::npos);
  CHECK(Err({"failover", "-u", "d"}).find("failover takes only DOMAIN") != std::string::npos);
  CHECK(Err({"receive", kPlain, "-F", "-b", "d"}).find("sending side") != std::string::npos);
  CHECK(P({"--help"})->verb == Verb::kHelp);
  CHECK(P({"status", "d"})->verb == Verb::kStatus);
  CHECK(P({"failover", "d"})->verb == Verb::kFailover);
  // -b needs no TLS (nothing leaves the host).
  CHECK(P({"-F", "-b", "d", "h"}).ok());
}

TEST_CASE("xl-ftsync: shell quoting of the receiver command", "[xl]") {
  CHECK(ShellQuote("plain-1.2:x") == "plain-1.2:x");
  CHECK(ShellQuote("a b") == "'a b'");
  CHECK(ShellQuote("it's") == "'it'\\''s'");
  CHECK(ShellQuote("") == "''");
}

}  // namespace
}  // namespace xlft
