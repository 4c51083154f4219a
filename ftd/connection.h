// One replication connection (TCP, with mutual TLS unless explicitly
// insecure), driven by the daemon's io_context, seen by the synchronous
// engines as a ByteSink and a ByteSource. Both directions are bounded: a
// writer blocks while too much is queued, and the socket is not read while
// too much received data waits for the engine.
#ifndef FTSYNC_FTD_CONNECTION_H_
#define FTSYNC_FTD_CONNECTION_H_

#include <utility>  // Boost 1.74 asio uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ftsync/io.h"

namespace ftd {

namespace asio = boost::asio;
using Tcp = asio::ip::tcp;

struct TlsFiles {
  std::string ca, cert, key;
};

// Builds a TLS context that presents `files.cert` and accepts only peers
// whose certificate `files.ca` signed. Errors name the file.
ftsync::Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const TlsFiles& files, bool server);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // `tls` null: plaintext.
  Connection(asio::io_context& io, Tcp::socket socket, std::shared_ptr<asio::ssl::context> tls, bool server);
  ~Connection();

  // TLS handshake (if any), then starts reading. `done(status)` runs on
  // the io thread. A handshake not done in time fails the connection.
  void Start(std::function<void(ftsync::Status)> done, int handshake_timeout_ms = 10000);

  ftsync::ByteSink& sink() { return sink_; }
  ftsync::ByteSource& source() { return inbound_.source(); }

  // Shuts the connection down from any thread: the engines then see end of
  // stream / a broken pipe.
  void Close(const std::string& why);
  bool closed() const { return closed_; }
  // Monotonic ns of the last byte received (or of Start): liveness.
  uint64_t last_rx_ns() const { return last_rx_ns_; }
  std::string peer() const { return peer_; }
  std::string close_reason() const;

 private:
  class Sink : public ftsync::ByteSink {
   public:
    explicit Sink(Connection* c) : c_(c) {}
    ftsync::Status Write(std::span<const ftsync::ConstBuffer> buffers) override;
    ftsync::Status Close() override;

   private:
    Connection* c_;
  };

  void ReadMore();
  void ReadWhenRoom();
  void WriteMore();
  void Fail(const std::string& why);
  bool MarkClosed(const std::string& why);
  template <typename F> void WithStream(F f);

  asio::io_context& io_;
  asio::strand<asio::io_context::executor_type> strand_;
  std::optional<asio::ssl::stream<Tcp::socket>> tls_;
  std::optional<Tcp::socket> plain_;
  bool server_;
  std::string peer_;
  Sink sink_{this};
  ftsync::MemoryPipe inbound_;
  std::vector<uint8_t> read_buf_ = std::vector<uint8_t>(1 << 16);

  mutable std::mutex mu_;  // guards the outbound queue and close state
  std::condition_variable cv_;
  std::deque<std::vector<uint8_t>> outbound_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> last_rx_ns_{0};
  std::string close_reason_;
  static constexpr size_t kMaxQueued = 32u << 20;
  static constexpr size_t kMaxInbound = 64u << 20;
};

}  // namespace ftd

#endif  // FTSYNC_FTD_CONNECTION_H_
