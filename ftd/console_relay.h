// The guest's serial console through ftd, with output commit:
//   QEMU -chardev socket,id=con0,path=SOCK,server=off -serial chardev:con0
// connects to SOCK, where ftd listens. What the guest prints is held until
// its epoch is acknowledged, then appended to the console log (and copied
// to a callback, e.g. stdout). Input from the log's reader is not relayed.
#ifndef FTSYNC_FTD_CONSOLE_RELAY_H_
#define FTSYNC_FTD_CONSOLE_RELAY_H_

#include <array>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "connection.h"
#include "ftsync/output_buffer.h"
#include "log.h"

namespace ftd {

class ConsoleRelay {
 public:
  // `log_path` receives the released bytes (appended; may be empty: none).
  ConsoleRelay(asio::io_context& io, const std::string& log_path, StderrLogger* log,
               std::function<void(const std::string&)> tee = {});
  ~ConsoleRelay();
  ftsync::Status Listen(const std::string& path);
  ftsync::OutputBuffer& outbound() { return out_; }
  uint64_t bytes_from_guest() const { return from_guest_; }

 private:
  void Accept();
  void Read(std::shared_ptr<asio::local::stream_protocol::socket> s);
  asio::local::stream_protocol::acceptor acceptor_;
  StderrLogger* log_;
  std::function<void(const std::string&)> tee_;
  FILE* file_ = nullptr;
  std::string path_;
  ftsync::OutputBuffer out_;
  std::array<uint8_t, 4096> buf_;
  std::atomic<uint64_t> from_guest_{0};
};

}  // namespace ftd

#endif  // FTSYNC_FTD_CONSOLE_RELAY_H_
