#include "connection.h"

#include <openssl/ssl.h>

#include <chrono>

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

ftsync::Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const TlsFiles& f, bool server) {
  auto ctx = std::make_shared<asio::ssl::context>(server ? asio::ssl::context::tls_server
                                                         : asio::ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1, ec);
  ctx->load_verify_file(f.ca, ec);
  if (ec) return Status(Errc::kInvalidArgument, "TLS CA file " + f.ca + ": " + ec.message());
  ctx->use_certificate_chain_file(f.cert, ec);
  if (ec) return Status(Errc::kInvalidArgument, "TLS certificate " + f.cert + ": " + ec.message());
  ctx->use_private_key_file(f.key, asio::ssl::context::pem, ec);
  if (ec) return Status(Errc::kInvalidArgument, "TLS key " + f.key + ": " + ec.message());
  // Mutual authentication: both sides must present a certificate the CA signed.
  ctx->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
  if (ec) return Status(Errc::kInvalidArgument, "TLS verify mode: " + ec.message());
  return ctx;
}

Connection::Connection(asio::io_context& io, Tcp::socket socket, std::shared_ptr<asio::ssl::context> tls,
                       bool server)
    : io_(io), strand_(asio::make_strand(io)), server_(server) {
  boost::system::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  socket.set_option(Tcp::no_delay(true), ec);
  if (tls) tls_.emplace(std::move(socket), *tls);
  else plain_.emplace(std::move(socket));
}

Connection::~Connection() = default;

template <typename F>
void Connection::WithStream(F f) {
  if (tls_) f(*tls_);
  else f(*plain_);
}

namespace {
uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}
}  // namespace

void Connection::Start(std::function<void(Status)> done, int handshake_timeout_ms) {
  auto self = shared_from_this();
  last_rx_ns_ = NowNs();
  // A peer that connects and then says nothing must not hold the slot.
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(handshake_timeout_ms));
  auto finished = std::make_shared<std::atomic<bool>>(false);
  timer->async_wait(asio::bind_executor(strand_, [self, timer, finished](boost::system::error_code ec) {
    if (!ec && !*finished) self->Fail("no TLS handshake within the time limit");
  }));
  done = [done, timer, finished](Status s) {
    *finished = true;
    timer->cancel();
    done(s);
  };
  if (!tls_) {
    asio::post(strand_, [self, done] {
      self->ReadMore();
      done(Status::OK());
    });
    return;
  }
  tls_->async_handshake(server_ ? asio::ssl::stream_base::server : asio::ssl::stream_base::client,
                        asio::bind_executor(strand_, [self, done](boost::system::error_code ec) {
                          if (ec) {
                            std::string why = "TLS handshake with " + self->peer_ + " failed: " + ec.message();
                            self->Fail(why);
                            done(Status(Errc::kPeerRejected, why));
                            return;
                          }
                          self->ReadMore();
                          done(Status::OK());
                        }));
}

void Connection::ReadMore() {
  auto self = shared_from_this();
  WithStream([&](auto& s) {
    s.async_read_some(asio::buffer(read_buf_),
                      asio::bind_executor(strand_, [self](boost::system::error_code ec, size_t n) {
                        if (n > 0) {
                          self->last_rx_ns_ = NowNs();
                          (void)self->inbound_.sink().Write(ftsync::ConstBuffer(self->read_buf_.data(), n));
                        }
                        if (ec) {
                          self->Fail(ec == asio::error::eof || ec == asio::ssl::error::stream_truncated
                                         ? "peer closed the connection"
                                         : "read: " + ec.message());
                          return;
                        }
                        self->ReadWhenRoom();
                      }));
  });
}

// Reads on only while the engine keeps up: past kMaxInbound buffered bytes
// the socket is left unread, so TCP pushes back on the peer.
void Connection::ReadWhenRoom() {
  if (closed_) return;
  if (inbound_.buffered() < kMaxInbound) {
    ReadMore();
    return;
  }
  auto self = shared_from_this();
  auto t = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(2));
  t->async_wait(asio::bind_executor(strand_, [self, t](boost::system::error_code) { self->ReadWhenRoom(); }));
}

void Connection::WriteMore() {
  // On the strand. Sends the front buffer; continues until the queue is empty.
  std::unique_lock<std::mutex> l(mu_);
  if (outbound_.empty() || closed_) {
    writing_ = false;
    return;
  }
  writing_ = true;
  auto self = shared_from_this();
  std::vector<uint8_t>* front = &outbound_.front();
  l.unlock();
  WithStream([&](auto& s) {
    asio::async_write(s, asio::buffer(*front),
                      asio::bind_executor(strand_, [self](boost::system::error_code ec, size_t) {
                        {
                          std::lock_guard<std::mutex> g(self->mu_);
                          self->queued_bytes_ -= self->outbound_.front().size();
                          self->outbound_.pop_front();
                          self->cv_.notify_all();
                        }
                        if (ec) {
                          self->Fail("write: " + ec.message());
                          return;
                        }
                        self->WriteMore();
                      }));
  });
}

Status Connection::Sink::Write(std::span<const ftsync::ConstBuffer> buffers) {
  size_t total = 0;
  for (auto b : buffers) total += b.size();
  std::vector<uint8_t> chunk;
  chunk.reserve(total);
  for (auto b : buffers) chunk.insert(chunk.end(), b.begin(), b.end());
  std::unique_lock<std::mutex> l(c_->mu_);
  // Backpressure: the engine waits for the network, never buffers unboundedly.
  c_->cv_.wait(l, [&] { return c_->closed_ || c_->queued_bytes_ < kMaxQueued; });
  if (c_->closed_) return Status(Errc::kPeerGone, "connection to " + c_->peer_ + " closed: " + c_->close_reason_);
  c_->queued_bytes_ += chunk.size();
  c_->outbound_.push_back(std::move(chunk));
  if (!c_->writing_) {
    c_->writing_ = true;
    auto self = c_->shared_from_this();
    asio::post(c_->strand_, [self] { self->WriteMore(); });
  }
  return Status::OK();
}

// Waits until everything queued has been written (or the connection died),
// so that a last record (END) is on the wire before the process exits.
Status Connection::Sink::Close() {
  std::unique_lock<std::mutex> l(c_->mu_);
  c_->cv_.wait_for(l, std::chrono::seconds(5), [&] { return c_->closed_ || c_->outbound_.empty(); });
  if (!c_->outbound_.empty()) return Status(Errc::kPeerGone, "connection to " + c_->peer_ + " closed before the last bytes left");
  return Status::OK();
}

bool Connection::MarkClosed(const std::string& why) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (closed_) return false;
    closed_ = true;
    close_reason_ = why;
    cv_.notify_all();  // writers blocked on backpressure fail now
  }
  (void)inbound_.sink().Close();  // readers see end of stream now
  return true;
}

void Connection::Fail(const std::string& why) {
  // On the strand.
  MarkClosed(why);
  boost::system::error_code ec;
  if (tls_) tls_->next_layer().close(ec);
  else plain_->close(ec);
}

void Connection::Close(const std::string& why) {
  // The engines learn at once; the socket is closed on the io thread.
  MarkClosed(why);
  auto self = shared_from_this();
  asio::post(strand_, [self, why] { self->Fail(why); });
}

std::string Connection::close_reason() const {
  std::lock_guard<std::mutex> l(mu_);
  return close_reason_;
}

}  // namespace ftd
