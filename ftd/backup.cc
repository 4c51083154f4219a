// The backup: accepts one primary at a time, applies its epochs to the
// replica, and takes over (promotes) when the primary dies: missed
// heartbeats or a broken connection. After promotion it refuses every
// primary that shows up again (split-brain guard): the old primary may only
// come back as a backup. The guest it took over can be protected again
// (`ftd ctl protect HOST:PORT`, or --reprotect at once): this ftd then runs
// a primary for it, towards a new backup.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <sstream>

#include "roles.h"

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

namespace {

class Backup : public Role {
 public:
  Backup(const Options& o, asio::io_context& io, StderrLogger* log)
      : o_(o), io_(io), log_(log), acceptor_(io) {}
  ~Backup() override {
    Stop();
    Wait();
  }

  Status Start() override {
    if (!o_.insecure_plaintext) {
      auto ctx = MakeTlsContext({o_.tls_ca, o_.tls_cert, o_.tls_key}, true);
      if (!ctx.ok()) return ctx.status();
      tls_ = *ctx;
    } else {
      log_->Warn("accepting a primary WITHOUT TLS (--insecure-plaintext): anyone who reaches " + o_.listen +
                 " can write into the replica");
    }
    auto rep = ftsync::ReplicaImage::Open(o_.replica_dir);
    if (!rep.ok()) return rep.status().Annotate("replica");
    replica_ = std::move(rep).value();
    if (auto info = replica_->LastComplete())
      log_->Info("replica " + o_.replica_dir + " holds epoch " + std::to_string(info->epoch) +
                 " of an earlier session; a new primary will resynchronise");
    auto ep = ParseEndpoint(io_, o_.listen);
    if (!ep.ok()) return ep.status();
    boost::system::error_code ec;
    acceptor_.open(ep->protocol(), ec);
    if (!ec) acceptor_.set_option(Tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(*ep, ec);
    if (!ec) acceptor_.listen(4, ec);
    if (ec) return Status(Errc::kIoError, "listen on " + o_.listen + ": " + ec.message());
    log_->Info("waiting for a primary on " + o_.listen);
    SetState("waiting");
    Accept();
    watchdog_ = std::thread([this] { WatchLoop(); });
    return Status::OK();
  }

  std::string StatusLine() override {
    if (Role* p = primary()) return p->StatusLine();
    std::lock_guard<std::mutex> l(mu_);
    std::ostringstream s;
    s << "role=backup state=" << state_;
    if (conn_) s << " primary=" << conn_->peer();
    if (auto info = replica_->LastComplete()) s << " replica_epoch=" << info->epoch;
    if (guest_) s << " guest=\"" << guest_->Describe() << "\"";
    return s.str();
  }

  std::string StatsText() override {
    if (Role* p = primary()) return p->StatsText();
    std::lock_guard<std::mutex> l(mu_);
    ftsync::ReceiverStats st = rx_ ? rx_->stats() : last_stats_;
    std::ostringstream s;
    s << "epochs applied " << st.epochs_applied << ", last complete "
      << (st.has_complete_epoch ? std::to_string(st.last_complete_epoch) : "none") << ", pages applied "
      << st.pages_applied << ", bytes received " << st.bytes_received << ", heartbeats " << st.heartbeats_received
      << ", last apply " << st.last_apply_us << " us, discarded epochs " << st.discarded_epochs;
    return s.str();
  }

  std::string StatsJson() override {
    if (Role* p = primary()) return p->StatsJson();
    std::lock_guard<std::mutex> l(mu_);
    ftsync::ReceiverStats st = rx_ ? rx_->stats() : last_stats_;
    auto info = replica_->LastComplete();
    std::ostringstream s;
    s << "{\"role\":\"backup\",\"state\":\"" << state_ << "\",\"replica_epoch\":"
      << (info ? std::to_string(info->epoch) : "null") << ",\"epochs_applied\":" << st.epochs_applied
      << ",\"pages_applied\":" << st.pages_applied << ",\"bytes_received\":" << st.bytes_received
      << ",\"heartbeats_received\":" << st.heartbeats_received << ",\"last_apply_us\":" << st.last_apply_us
      << ",\"discarded_epochs\":" << st.discarded_epochs << ",\"promotions\":" << promotions_ << "}";
    return s.str();
  }

  std::string Failover() override {
    std::shared_ptr<Connection> conn;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (TookOverLocked()) return "error: already " + state_;
      conn = conn_;
      manual_failover_ = true;
      if (!conn) {
        if (session_running_) return "error: a session is ending; try again";
        state_ = "promoting";
        // Never restore on the io thread (this runs there).
        if (promote_thread_.joinable()) promote_thread_.join();
        promote_thread_ = std::thread([this] { PromoteNow("failover requested on the control socket"); });
        return "ok: promoting";
      }
    }
    conn->Close("failover requested on the control socket");  // Session() promotes
    return "ok: promoting";
  }

  std::string Protect(const std::string& peer) override {
    std::unique_ptr<Guest> guest;
    {
      std::lock_guard<std::mutex> l(mu_);
      if (primary_) return "error: the guest is protected already (" + o_.peer + ")";
      if (state_ != "active" || !guest_)
        return "error: nothing to protect: this backup has not taken over (state " + state_ + ")";
      if (o_.hypervisor == "xen")
        return "error: on xen the restored domain is an ordinary domain: protect it with `xl-ftsync " + o_.domain +
               " HOST` or `ftd primary --hypervisor xen --domain " + o_.domain + "`";
      auto ep = ParseEndpoint(io_, peer);
      if (!ep.ok()) return "error: " + ep.status().context();
      if (!o_.insecure_plaintext) {
        // The primary's side of mutual TLS, with this host's certificate.
        auto ctx = MakeTlsContext({o_.tls_ca, o_.tls_cert, o_.tls_key}, false);
        if (!ctx.ok()) return "error: " + ctx.status().ToString();
      }
      guest = std::move(guest_);
      state_ = "reprotected";
      o_.peer = peer;
    }
    Options po = o_;
    po.role = RoleKind::kPrimary;
    log_->Warn("protecting the taken-over guest again, to the backup at " + peer);
    auto p = MakePrimaryFor(po, io_, log_, std::move(guest));
    // Checked above: Start cannot fail on the endpoint or the certificates,
    // and it launches nothing; the connection is made on its own thread.
    Status s = p->Start();
    if (!s.ok()) log_->Error("protecting the taken-over guest: " + s.ToString());
    std::lock_guard<std::mutex> l(mu_);
    primary_ = std::move(p);
    return s.ok() ? "ok: protecting the guest to " + peer : "error: " + s.ToString();
  }

  void Stop() override {
    stop_ = true;
    if (Role* p = primary()) p->Stop();
    asio::post(io_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    std::shared_ptr<Connection> conn;
    {
      std::lock_guard<std::mutex> l(mu_);
      conn = conn_;
    }
    if (conn) conn->Close("backup stopping");
  }

  void Wait() override {
    if (Role* p = primary()) p->Wait();
    if (session_.joinable()) session_.join();
    if (promote_thread_.joinable()) promote_thread_.join();
    if (watchdog_.joinable()) watchdog_.join();
  }

 private:
  void SetState(const std::string& s) {
    std::lock_guard<std::mutex> l(mu_);
    state_ = s;
  }

  // This host runs the guest now (taking over, or protecting it again).
  bool TookOverLocked() const {
    return state_ == "active" || state_ == "promoting" || state_ == "reprotected";
  }

  // The primary that protects the taken-over guest, once there is one. It
  // lives until this role is destroyed.
  Role* primary() {
    std::lock_guard<std::mutex> l(mu_);
    return primary_.get();
  }

  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, Tcp::socket sock) {
      if (ec) {
        if (!stop_) log_->Warn("accept: " + ec.message());
        if (!stop_ && ec != asio::error::operation_aborted) Accept();
        return;
      }
      OnAccept(std::move(sock));
      Accept();
    });
  }

  void OnAccept(Tcp::socket sock) {
    auto conn = std::make_shared<Connection>(io_, std::move(sock), tls_, true);
    std::string who = conn->peer();
    {
      std::lock_guard<std::mutex> l(mu_);
      if (TookOverLocked()) {
        log_->Warn("refusing primary " + who + ": this host took over (split-brain guard); the old primary must "
                   "rejoin as a backup");
        conn->Close("refused: took over");
        return;
      }
      if (conn_ || session_running_) {
        log_->Warn("refusing " + who + ": a primary is already connected" + (conn_ ? " (" + conn_->peer() + ")" : ""));
        conn->Close("refused: busy");
        return;
      }
      conn_ = conn;
      session_running_ = true;
    }
    conn->Start([this, conn, who](Status s) {
      if (!s.ok()) {
        log_->Warn("refused " + who + ": " + s.ToString() + " (nothing was written to the replica)");
        std::lock_guard<std::mutex> l(mu_);
        if (conn_ == conn) conn_.reset();
        session_running_ = false;
        return;
      }
      log_->Info("primary " + who + " connected");
      // The previous session thread has finished its work (session_running_
      // was false): this join does not wait.
      if (session_.joinable()) session_.join();
      session_ = std::thread([this, conn] { Session(conn); });
    });
  }

  void Session(std::shared_ptr<Connection> conn) {
    auto rx = std::make_shared<ftsync::Receiver>(replica_.get(), &conn->source(), &conn->sink(),
                                                 ftsync::ReceiverOptions{log_});
    {
      std::lock_guard<std::mutex> l(mu_);
      rx_ = rx;
      state_ = "syncing";
    }
    Status s = rx->Handshake();
    if (s.ok()) {
      SetState("protecting");
      s = rx->Run();
    }
    // Take over only from an epoch of this very session: an older replica
    // would undo state changes whose output the primary released while it
    // ran unprotected.
    const bool this_session_epoch = rx->last_complete_epoch().has_value();
    const bool lost = !s.ok() && !stop_ && (s.IsFailover() || manual_failover_);
    bool manual, promote = false;
    {
      std::lock_guard<std::mutex> l(mu_);
      last_stats_ = rx->stats();
      rx_.reset();
      conn_.reset();
      manual = manual_failover_;
      manual_failover_ = false;
      promote = lost && (manual || (o_.promote && this_session_epoch));
      state_ = promote ? "promoting" : "waiting";
      session_running_ = false;
    }
    if (!s.ok() && s.IsCorruption()) (void)conn->sink().Close();  // let the NACK reach the primary
    conn->Close(s.ok() ? "session ended" : s.ToString());
    if (s.ok()) {
      log_->Info("primary ended the session deliberately (END): not taking over");
      return;
    }
    std::string why = conn->close_reason().empty() ? s.ToString() : conn->close_reason();
    if (stop_) return;
    if (lost) {
      log_->Warn("primary lost: " + why);
      if (promote) PromoteNow(why);
      else if (!o_.promote) log_->Warn("not promoting (--no-promote): the replica is kept");
      else log_->Error("not promoting: the primary died before this session's first complete epoch, and the "
                       "replica's older epoch may miss state whose output already left; `ftd ctl failover` "
                       "takes over from it anyway");
      return;
    }
    log_->Error("rejected the primary's stream: " + s.ToString() +
                "; the replica keeps its last complete epoch; waiting for a primary to resynchronise");
  }

  void PromoteNow(const std::string& why) {
    auto info = replica_->LastComplete();
    if (!info) {
      log_->Error("cannot take over: the replica has no complete epoch (" + why + ")");
      SetState("waiting");
      return;
    }
    auto g = RestoreGuest(o_, GuestContext{&io_, log_}, replica_.get());
    if (!g.ok()) {
      log_->Error("cannot take over: " + g.status().ToString());
      SetState("waiting");
      return;
    }
    std::string describe;
    {
      std::lock_guard<std::mutex> l(mu_);
      guest_ = std::move(g).value();
      state_ = "active";
      ++promotions_;
      describe = guest_->Describe();
    }
    log_->Warn("TOOK OVER from epoch " + std::to_string(info->epoch) + " of session " +
               std::to_string(info->session) + ": " + describe);
    Guest* guest;
    {
      std::lock_guard<std::mutex> l(mu_);
      guest = guest_.get();
    }
    Status a = guest->Announce();
    if (!a.ok()) log_->Warn("could not announce the guest's address yet: " + a.ToString());
    if (o_.exit_after_promote) {
      log_->Info("--exit-after-promote: not waiting for the taken-over guest to end; exiting");
      ::kill(::getpid(), SIGTERM);  // main's handler stops cleanly
      return;
    }
    if (!o_.reprotect.empty()) {
      std::string r = Protect(o_.reprotect);
      if (r.rfind("ok", 0) != 0) log_->Error("--reprotect " + o_.reprotect + ": " + r);
    }
  }

  void WatchLoop() {
    const uint64_t timeout = static_cast<uint64_t>(o_.heartbeat_ms) * o_.missed_heartbeats * 1000000;
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(o_.heartbeat_ms));
      std::shared_ptr<Connection> conn;
      std::shared_ptr<ftsync::Receiver> rx;
      if (Role* p = primary()) {
        // The guest's primary ends by itself only when the guest failed.
        if (p->Done() && !stop_ && !guest_ended_) {
          guest_ended_ = true;
          log_->Warn("the taken-over guest ended while protected again; exiting");
          ::kill(::getpid(), SIGTERM);
        }
        continue;
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        if (state_ == "active" && guest_) {
          // Wait in the background for the end of the promoted guest.
          Status g = guest_->RunFor(0);
          if (!g.ok() && !guest_ended_) {
            guest_ended_ = true;
            log_->Warn("the taken-over guest ended (" + g.ToString() + "); exiting");
            ::kill(::getpid(), SIGTERM);
          }
          continue;
        }
        conn = conn_;
        rx = rx_;
      }
      if (!conn || !rx) continue;
      if (NowNs() - conn->last_rx_ns() > timeout) {
        conn->Close("primary missed " + std::to_string(o_.missed_heartbeats) + " heartbeats (" +
                    std::to_string(o_.heartbeat_ms * o_.missed_heartbeats) + " ms of silence)");
        continue;
      }
      (void)rx->SendHeartbeat(NowNs());
    }
  }

  Options o_;
  asio::io_context& io_;
  StderrLogger* log_;
  std::shared_ptr<asio::ssl::context> tls_;
  Tcp::acceptor acceptor_;
  std::unique_ptr<ftsync::ReplicaImage> replica_;
  std::thread session_, watchdog_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::shared_ptr<Connection> conn_;
  std::shared_ptr<ftsync::Receiver> rx_;
  ftsync::ReceiverStats last_stats_;
  std::unique_ptr<Guest> guest_;
  std::unique_ptr<Role> primary_;  // after Protect: owns the guest
  std::string state_ = "starting";
  bool manual_failover_ = false;
  bool session_running_ = false;  // from accept to the end of Session()
  std::thread promote_thread_;    // a manual failover with no session
  uint64_t promotions_ = 0;
  bool guest_ended_ = false;      // watchdog thread, under mu_
};

}  // namespace

std::unique_ptr<Role> MakeBackup(const Options& o, asio::io_context& io, StderrLogger* log) {
  return std::make_unique<Backup>(o, io, log);
}

}  // namespace ftd
