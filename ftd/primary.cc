// The primary: launches the guest (or takes one that runs already: a
// backup's taken-over guest, re-protected), connects to the backup,
// checkpoints every interval. Without a backup the guest keeps running
// unprotected (with a warning) and ftd reconnects; a new connection starts
// with a full resync.
#include <algorithm>
#include <chrono>
#include <future>
#include <sstream>

#include "blackhole.h"
#include "roles.h"

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch()).count());
}

ftsync::Result<Tcp::endpoint> ParseEndpoint(asio::io_context& io, const std::string& hp) {
  auto colon = hp.rfind(':');
  if (colon == std::string::npos) return Status(Errc::kInvalidArgument, "'" + hp + "' is not HOST:PORT");
  std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  Tcp::resolver r(io);
  auto res = r.resolve(host, port, Tcp::resolver::numeric_service, ec);
  if (ec || res.empty()) return Status(Errc::kNotFound, "cannot resolve '" + hp + "': " + ec.message());
  return res.begin()->endpoint();
}

namespace {

template <typename T>
T ValueOr(const ftsync::Result<T>& r, T fallback) {
  return r.ok() ? r.value() : fallback;
}

class Primary : public Role {
 public:
  Primary(const Options& o, asio::io_context& io, StderrLogger* log) : o_(o), io_(io), log_(log) {}
  Primary(const Options& o, asio::io_context& io, StderrLogger* log, std::unique_ptr<Guest> guest)
      : o_(o), io_(io), log_(log), guest_(std::move(guest)) {}
  ~Primary() override {
    Stop();
    Wait();
  }

  Status Start() override {
    ftsync::CheckpointerOptions co = SessionOptions();
    log_->Info(std::string("memory sync: delta ") + ftsync::DeltaModeName(co.delta) + ", compression " +
               ftsync::CompressionName(co.compression) + ", speculation " + o_.speculation);
    if (o_.blackhole) {
      log_->Warn("--blackhole: checkpoints go to /dev/null and are acknowledged at once: NO backup, NO failover");
      return StartGuest();
    }
    if (!o_.insecure_plaintext) {
      auto ctx = MakeTlsContext({o_.tls_ca, o_.tls_cert, o_.tls_key}, false);
      if (!ctx.ok()) return ctx.status();
      tls_ = *ctx;
    } else {
      log_->Warn("replicating WITHOUT TLS (--insecure-plaintext): the VM's memory crosses the network in clear");
    }
    auto ep = ParseEndpoint(io_, o_.peer);
    if (!ep.ok()) return ep.status();
    peer_ = *ep;
    return StartGuest();
  }

  Status StartGuest() {
    if (guest_) {
      log_->Info("protecting the running guest: " + guest_->Describe());
    } else {
      auto g = LaunchGuest(o_, GuestContext{&io_, log_});
      if (!g.ok()) return g.status().Annotate("launch guest");
      guest_ = std::move(g).value();
      log_->Info("guest running: " + guest_->Describe());
    }
    engine_ = std::thread([this] { EngineLoop(); });
    heartbeat_ = std::thread([this] { HeartbeatLoop(); });
    return Status::OK();
  }

  std::string StatusLine() override {
    std::lock_guard<std::mutex> l(mu_);
    std::ostringstream s;
    s << "role=primary state=" << state_ << " backup=" << (o_.blackhole ? "blackhole" : o_.peer);
    if (cp_) s << " session=" << std::hex << cp_->session() << std::dec << " epoch=" << cp_->next_epoch()
               << " acked=" << cp_->last_acked_epoch();
    s << " sessions=" << sessions_;
    return s.str();
  }

  std::string StatsText() override {
    std::lock_guard<std::mutex> l(mu_);
    if (!cp_) return "no session (" + state_ + ")";
    ftsync::CheckpointerStats st = cp_->stats();
    std::ostringstream s;
    s << "epochs sent " << st.epochs_sent << ", acked " << st.epochs_acked << ", in flight " << st.in_flight
      << "\nlast epoch " << st.last.epoch << ": " << st.last.dirty_pages << " dirty pages, "
      << st.last.bytes_wire << " bytes, paused " << st.last.paused_us << " us (harvest " << st.last.harvest_us
      << ", copy " << st.last.copy_us << ", state " << st.last.state_save_us << "), ack latency "
      << st.last.ack_latency_us << " us\ntotal " << st.total_bytes_wire << " bytes, "
      << st.total_dirty_pages << " dirty pages";
    return s.str();
  }

  std::string StatsJson() override {
    std::lock_guard<std::mutex> l(mu_);
    std::ostringstream s;
    s << "{\"role\":\"primary\",\"state\":\"" << state_ << "\",\"sessions\":" << sessions_;
    if (cp_) {
      ftsync::CheckpointerStats st = cp_->stats();
      s << ",\"epochs_sent\":" << st.epochs_sent << ",\"epochs_acked\":" << st.epochs_acked
        << ",\"in_flight\":" << st.in_flight << ",\"precopy_rounds\":" << st.precopy_rounds
        << ",\"total_bytes_wire\":" << st.total_bytes_wire
        << ",\"total_dirty_pages\":" << st.total_dirty_pages << ",\"last\":{\"epoch\":" << st.last.epoch
        << ",\"dirty_pages\":" << st.last.dirty_pages << ",\"bytes_wire\":" << st.last.bytes_wire
        << ",\"paused_us\":" << st.last.paused_us << ",\"harvest_us\":" << st.last.harvest_us
        << ",\"copy_us\":" << st.last.copy_us << ",\"state_save_us\":" << st.last.state_save_us
        << ",\"ack_latency_us\":" << st.last.ack_latency_us << ",\"delta_pages\":" << st.last.delta_pages
        << ",\"bytes_after_delta\":" << st.last.bytes_after_delta
        << ",\"bytes_after_compression\":" << st.last.bytes_after_compression
        << ",\"encode_us\":" << st.last.encode_us << ",\"compress_us\":" << st.last.compress_us
        << ",\"speculative_sends\":" << st.last.speculative_sends
        << ",\"speculative_pages\":" << st.last.speculative_pages
        << ",\"speculative_bytes\":" << st.last.speculative_bytes
        << ",\"speculative_unchanged\":" << st.last.speculative_unchanged << "}";
      // Pause and size of recent epochs, for medians and tails.
      s << ",\"recent\":[";
      bool first = true;
      uint64_t sends = 0, named = 0, unchanged = 0, sbytes = 0;
      for (const ftsync::EpochStats& e : cp_->stats_history()) {
        s << (first ? "" : ",") << "[" << e.epoch << "," << e.paused_us << "," << e.dirty_pages << ","
          << e.bytes_wire << "]";
        first = false;
        sends += e.speculative_sends;
        named += e.speculative_pages;
        unchanged += e.speculative_unchanged;
        sbytes += e.speculative_bytes;
      }
      s << "]";
      // Speculation over the same recent epochs.
      s << ",\"speculation\":{\"active\":" << (cp_->speculating() ? "true" : "false")
        << ",\"sends\":" << sends << ",\"pages\":" << named << ",\"unchanged\":" << unchanged
        << ",\"bytes\":" << sbytes << "}";
    }
    s << "}";
    return s.str();
  }

  std::string Failover() override { return "error: failover is a backup command (run it on the backup)"; }
  std::string Protect(const std::string&) override { return "error: this ftd is a primary already"; }
  bool Done() override { return engine_done_; }

  void Stop() override { stop_ = true; }

  void Wait() override {
    if (engine_.joinable()) engine_.join();
    if (heartbeat_.joinable()) heartbeat_.join();
  }

 private:
  void SetState(const std::string& s) {
    std::lock_guard<std::mutex> l(mu_);
    state_ = s;
  }

  // Connects and handshakes (TLS); returns the connection or why not.
  ftsync::Result<std::shared_ptr<Connection>> Connect() {
    // Connect on the io thread, with a deadline: the engine thread must not
    // hang on a backup host that swallows packets.
    auto sock = std::make_shared<Tcp::socket>(io_);
    auto connected = std::make_shared<std::promise<boost::system::error_code>>();
    auto fut = connected->get_future();
    sock->async_connect(peer_, [connected](boost::system::error_code ec) { connected->set_value(ec); });
    const auto deadline = std::chrono::milliseconds(5000);
    if (fut.wait_for(deadline) != std::future_status::ready) {
      asio::post(io_, [sock] {
        boost::system::error_code ignored;
        sock->close(ignored);
      });
      fut.wait();
      return Status(Errc::kPeerGone, "cannot reach backup " + o_.peer + ": connect timed out");
    }
    if (auto ec = fut.get()) return Status(Errc::kPeerGone, "cannot reach backup " + o_.peer + ": " + ec.message());
    auto conn = std::make_shared<Connection>(io_, std::move(*sock), tls_, false);
    auto done = std::make_shared<std::promise<Status>>();
    auto hs = done->get_future();
    conn->Start([done](Status s) { done->set_value(s); }, 5000);
    Status s = hs.get();  // Start's own deadline bounds this
    if (!s.ok()) return s;
    return conn;
  }

  void EndSession(const Status& why) {
    std::shared_ptr<ftsync::Checkpointer> cp;
    std::shared_ptr<Connection> conn;
    {
      std::lock_guard<std::mutex> l(mu_);
      cp = std::move(cp_);
      conn = std::move(conn_);
      state_ = "unprotected";
    }
    if (conn) conn->Close(why.ToString());
    // Destroy the Checkpointer here, on the engine thread, before any new
    // session: its teardown releases held output and stops the dirty log,
    // which must not happen in the middle of the next session. The
    // heartbeat thread holds it only for a non-blocking call.
    while (cp && cp.use_count() > 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    cp.reset();
    log_->Warn("lost the backup (" + why.ToString() +
               "): the VM keeps running UNPROTECTED; reconnecting every " + std::to_string(o_.reconnect_ms) + " ms");
  }

  void EngineLoop() {
    uint64_t next_attempt = 0;
    while (!stop_) {
      bool have_session;
      {
        std::lock_guard<std::mutex> l(mu_);
        have_session = cp_ != nullptr;
      }
      if (!have_session && NowNs() >= next_attempt) {
        next_attempt = NowNs() + static_cast<uint64_t>(o_.reconnect_ms) * 1000000;
        if (o_.blackhole) {
          StartBlackholeSession();
        } else if (auto conn = Connect(); !conn.ok()) {
          SetState("unprotected");
          log_->Warn(conn.status().ToString() + ": the VM runs UNPROTECTED until a backup answers");
        } else {
          ftsync::CheckpointerOptions co = SessionOptions();
          auto cp = std::make_shared<ftsync::Checkpointer>(guest_->domain(), &(*conn)->sink(), &(*conn)->source(), co);
          for (ftsync::CheckpointDevice* d : guest_->devices()) (void)cp->AddDevice(d);
          {
            std::lock_guard<std::mutex> l(mu_);
            cp_ = cp;
            conn_ = *conn;
            state_ = "syncing";
            ++sessions_;
          }
          log_->Info("connected to backup " + (*conn)->peer() + ": full synchronisation");
          Status s = cp->Start();
          if (s.ok()) {
            SetState("protected");
            log_->Info("protected: epoch 0 sent, " + std::to_string(cp->stats().last.bytes_wire) + " bytes");
          } else {
            EndSession(s);
          }
        }
      }
      std::shared_ptr<ftsync::Checkpointer> cp;
      {
        std::lock_guard<std::mutex> l(mu_);
        cp = cp_;
      }
      // The epoch period runs from the start of one checkpoint to the next.
      // While the guest runs, ACKs are processed as they arrive, so each
      // epoch's output leaves as soon as the backup has it, not an interval
      // later.
      const uint64_t deadline = epoch_start_ns_ + static_cast<uint64_t>(o_.interval_ms) * 1000000;
      // While the session speculates, ticks-1 speculative sends are spread
      // evenly over the interval (tick k at k/ticks of it). Ticks whose time
      // passed during the checkpoint itself are skipped, not run back to
      // back; a checkpoint that takes the whole interval leaves none.
      const uint64_t period = static_cast<uint64_t>(o_.interval_ms) * 1000000;
      const uint32_t ticks = cp && cp->speculating() ? static_cast<uint32_t>(o_.speculation_ticks) : 1;
      uint32_t tick = 1;
      Status s;
      while (cp && s.ok() && !stop_) {
        uint64_t now = NowNs();
        if (now >= deadline) break;
        uint64_t until = deadline;
        if (tick < ticks) {
          const uint64_t at = epoch_start_ns_ + period * tick / ticks;
          if (now >= at) {
            // The next tick is the first one still in the future.
            tick = static_cast<uint32_t>(std::min<uint64_t>(ticks, (now - epoch_start_ns_) * ticks / period + 1));
            // The guest runs on (the in-memory guest advances one step
            // per call); a failure is seen again, and handled, below.
            if (!guest_->RunFor(0).ok()) break;
            s = cp->Speculate();
            continue;
          }
          until = at;
        }
        s = cp->PollBackChannel(static_cast<int>((until - now + 999999) / 1000000));
      }
      if (!cp) {
        uint64_t now = NowNs();
        int wait_ms = now >= deadline ? 0 : static_cast<int>((deadline - now) / 1000000);
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
      }
      Status g = guest_->RunFor(0);
      if (!g.ok()) {
        // No END: the backup must treat this like a dead primary and take over.
        log_->Error("guest failed: " + g.ToString() + "; leaving it to the backup");
        guest_failed_ = true;
        break;
      }
      epoch_start_ns_ = NowNs();
      if (!cp) continue;
      if (s.ok()) s = cp->Checkpoint();
      if (s.ok()) s = cp->PollBackChannel(0);
      if (!s.ok()) {
        if (!cp->status().ok()) {
          cp.reset();
          EndSession(s);  // the session is over
        } else {
          log_->Warn("checkpoint failed, will retry: " + s.ToString());
        }
      }
    }
    // Deliberate stop: tell the backup not to fail over.
    std::shared_ptr<ftsync::Checkpointer> cp;
    {
      std::lock_guard<std::mutex> l(mu_);
      cp = cp_;
    }
    if (cp && guest_failed_) {
      std::lock_guard<std::mutex> l(mu_);
      if (conn_) conn_->Close("guest failed");
    } else if (cp) {
      Status s = cp->Finish();
      std::shared_ptr<Connection> conn;
      {
        std::lock_guard<std::mutex> l(mu_);
        conn = conn_;
      }
      if (s.ok() && conn) s = conn->sink().Close();  // END must leave before we exit
      log_->Info(s.ok() ? "session ended cleanly (END sent)" : "could not end the session cleanly: " + s.ToString());
      if (conn) conn->Close("primary stopped");
    }
    SetState(guest_failed_ ? "guest failed" : "stopped");
    engine_done_ = true;
  }

  // The Checkpointer's options from the command line (validated by
  // ParseOptions, so the Parse* calls cannot fail here).
  ftsync::CheckpointerOptions SessionOptions() const {
    ftsync::CheckpointerOptions co;
    co.max_in_flight = o_.max_in_flight;
    co.logger = log_;
    co.delta = ValueOr(ftsync::ParseDeltaMode(o_.delta), co.delta);
    co.delta_block_size = static_cast<uint32_t>(o_.delta_block_size);
    co.shadow_budget_bytes = static_cast<size_t>(o_.shadow_memory_mb) << 20;
    co.compression = o_.no_compression ? ftsync::Compression::kNone
                                       : ValueOr(ftsync::ParseCompression(o_.compression), co.compression);
    co.compression_level = o_.compression_level;
    co.speculation = ValueOr(ftsync::ParseSpeculation(o_.speculation), co.speculation);
    co.speculation_ticks = static_cast<uint32_t>(o_.speculation_ticks);
    co.precopy_rounds = static_cast<uint32_t>(o_.precopy_rounds);
    return co;
  }

  // A session whose stream goes to /dev/null (--blackhole).
  void StartBlackholeSession() {
    std::shared_ptr<ftsync::Checkpointer> old;
    {
      std::lock_guard<std::mutex> l(mu_);
      old = std::move(cp_);
    }
    old.reset();  // before its pipes go
    blackhole_ = std::make_unique<Blackhole>();
    ftsync::CheckpointerOptions co = SessionOptions();
    auto cp = std::make_shared<ftsync::Checkpointer>(guest_->domain(), &blackhole_->sink(), &blackhole_->source(), co);
    for (ftsync::CheckpointDevice* d : guest_->devices()) (void)cp->AddDevice(d);
    {
      std::lock_guard<std::mutex> l(mu_);
      cp_ = cp;
      state_ = "syncing";
      ++sessions_;
    }
    Status s = cp->Start();
    if (s.ok()) {
      SetState("protected");
      log_->Info("blackhole: epoch 0 sent to /dev/null, " + std::to_string(cp->stats().last.bytes_wire) + " bytes");
    } else {
      EndSession(s);
    }
  }

  void HeartbeatLoop() {
    const uint64_t timeout = static_cast<uint64_t>(o_.heartbeat_ms) * o_.missed_heartbeats * 1000000;
    // Runs until the engine is done: a stop waits for the last ACKs, and a
    // silent backup must still be detected then.
    while (!engine_done_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(o_.heartbeat_ms));
      std::shared_ptr<ftsync::Checkpointer> cp;
      std::shared_ptr<Connection> conn;
      {
        std::lock_guard<std::mutex> l(mu_);
        cp = cp_;
        conn = conn_;
      }
      if (!cp || !conn) continue;
      if (NowNs() - conn->last_rx_ns() > timeout) {
        conn->Close("backup missed " + std::to_string(o_.missed_heartbeats) + " heartbeats");
        continue;
      }
      (void)cp->SendHeartbeat();
    }
  }

  Options o_;
  asio::io_context& io_;
  StderrLogger* log_;
  std::shared_ptr<asio::ssl::context> tls_;
  Tcp::endpoint peer_;
  std::unique_ptr<Guest> guest_;
  std::thread engine_, heartbeat_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> engine_done_{false};
  bool guest_failed_ = false;  // engine thread only
  uint64_t epoch_start_ns_ = 0;  // engine thread only
  std::unique_ptr<Blackhole> blackhole_;  // engine thread; outlives cp_
  std::mutex mu_;
  std::shared_ptr<ftsync::Checkpointer> cp_;
  std::shared_ptr<Connection> conn_;
  std::string state_ = "starting";
  uint64_t sessions_ = 0;
};

}  // namespace

std::unique_ptr<Role> MakePrimary(const Options& o, asio::io_context& io, StderrLogger* log) {
  return std::make_unique<Primary>(o, io, log);
}

std::unique_ptr<Role> MakePrimaryFor(const Options& o, asio::io_context& io, StderrLogger* log,
                                     std::unique_ptr<Guest> guest) {
  return std::make_unique<Primary>(o, io, log, std::move(guest));
}

}  // namespace ftd
