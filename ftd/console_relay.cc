#include "console_relay.h"

#include <unistd.h>

namespace ftd {
using ftsync::Errc;
using ftsync::Status;
using Local = asio::local::stream_protocol;

ConsoleRelay::ConsoleRelay(asio::io_context& io, const std::string& log_path, StderrLogger* log,
                           std::function<void(const std::string&)> tee)
    : acceptor_(io),
      log_(log),
      tee_(std::move(tee)),
      out_("console", [this](const ftsync::OutputBuffer::Item& b) {
        if (file_) {
          std::fwrite(b.data(), 1, b.size(), file_);
          std::fflush(file_);
        }
        if (tee_) tee_(std::string(b.begin(), b.end()));
      }) {
  if (!log_path.empty()) {
    file_ = std::fopen(log_path.c_str(), "a");
    if (!file_) log_->Error("cannot open console log " + log_path);
  }
}

ConsoleRelay::~ConsoleRelay() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  if (file_) std::fclose(file_);
  if (!path_.empty()) ::unlink(path_.c_str());
}

Status ConsoleRelay::Listen(const std::string& path) {
  ::unlink(path.c_str());
  boost::system::error_code ec;
  acceptor_.open(Local(), ec);
  if (!ec) acceptor_.bind(Local::endpoint(path), ec);
  if (!ec) acceptor_.listen(1, ec);
  if (ec) return Status(Errc::kIoError, "console socket " + path + ": " + ec.message());
  path_ = path;
  Accept();
  return Status::OK();
}

void ConsoleRelay::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, Local::socket s) {
    if (ec) return;
    Read(std::make_shared<Local::socket>(std::move(s)));
    Accept();
  });
}

void ConsoleRelay::Read(std::shared_ptr<Local::socket> s) {
  s->async_read_some(asio::buffer(buf_), [this, s](boost::system::error_code ec, size_t n) {
    if (n > 0) {
      from_guest_ += n;
      out_.Append(ftsync::OutputBuffer::Item(buf_.begin(), buf_.begin() + static_cast<long>(n)));
    }
    if (!ec) Read(s);
  });
}

}  // namespace ftd
