#include "frame_bridge.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace ftd {
using ftsync::Errc;
using ftsync::Status;
using Local = asio::local::stream_protocol;

ftsync::Result<int> OpenTap(const std::string& name) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open /dev/net/tun (is the tun module loaded? root?)");
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno(e, "create TAP device " + name);
  }
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s >= 0) {
    ifreq up{};
    std::strncpy(up.ifr_name, name.c_str(), IFNAMSIZ - 1);
    if (::ioctl(s, SIOCGIFFLAGS, &up) == 0) {
      up.ifr_flags |= IFF_UP;
      (void)::ioctl(s, SIOCSIFFLAGS, &up);
    }
    ::close(s);
  }
  return fd;
}

FrameBridge::FrameBridge(asio::io_context& io, int host_fd, StderrLogger* log)
    : io_(io),
      log_(log),
      acceptor_(io),
      host_(io, host_fd),
      out_("net", [this](const ftsync::OutputBuffer::Item& f) { WriteToHost(f); }) {
  ReadHost();
}

FrameBridge::~FrameBridge() {
  boost::system::error_code ec;
  acceptor_.close(ec);
  host_.close(ec);
  if (guest_) guest_->close(ec);
  if (!path_.empty()) ::unlink(path_.c_str());
}

Status FrameBridge::Listen(const std::string& path) {
  ::unlink(path.c_str());
  boost::system::error_code ec;
  acceptor_.open(Local(), ec);
  if (!ec) acceptor_.bind(Local::endpoint(path), ec);
  if (!ec) acceptor_.listen(1, ec);
  if (ec) return Status(Errc::kIoError, "network socket " + path + ": " + ec.message());
  path_ = path;
  AcceptGuest();
  return Status::OK();
}

void FrameBridge::AcceptGuest() {
  acceptor_.async_accept([this](boost::system::error_code ec, Local::socket s) {
    if (ec) return;
    guest_ = std::make_shared<Local::socket>(std::move(s));
    guest_buf_.clear();
    to_guest_.clear();
    ReadGuest();
    AcceptGuest();  // a restarted QEMU reconnects
  });
}

void FrameBridge::ReadGuest() {
  auto g = guest_;
  g->async_read_some(asio::buffer(read_buf_), [this, g](boost::system::error_code ec, size_t n) {
    if (ec || g != guest_) return;
    guest_buf_.insert(guest_buf_.end(), read_buf_.begin(), read_buf_.begin() + static_cast<long>(n));
    // Frames: 4-byte big-endian length, then the frame.
    size_t off = 0;
    while (guest_buf_.size() - off >= 4) {
      uint32_t len = (uint32_t{guest_buf_[off]} << 24) | (uint32_t{guest_buf_[off + 1]} << 16) |
                     (uint32_t{guest_buf_[off + 2]} << 8) | guest_buf_[off + 3];
      if (len > 65536) {
        std::lock_guard<std::mutex> l(mu_);
        c_.bad_frames++;
        log_->Error("guest network stream out of sync (frame length " + std::to_string(len) + "): dropping it");
        g->close(ec);
        return;
      }
      if (guest_buf_.size() - off - 4 < len) break;
      std::vector<uint8_t> frame(guest_buf_.begin() + static_cast<long>(off + 4),
                                 guest_buf_.begin() + static_cast<long>(off + 4 + len));
      off += 4 + len;
      Learn(frame);
      {
        std::lock_guard<std::mutex> l(mu_);
        c_.from_guest++;
      }
      out_.Append(std::move(frame));  // held until its epoch is acknowledged
    }
    guest_buf_.erase(guest_buf_.begin(), guest_buf_.begin() + static_cast<long>(off));
    ReadGuest();
  });
}

void FrameBridge::ReadHost() {
  host_.async_read_some(asio::buffer(host_buf_), [this](boost::system::error_code ec, size_t n) {
    if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) return;
    if (ec) {
      // A TAP that went away (EIO) fails every read: stop, do not spin.
      log_->Error("host network device: " + ec.message() + "; inbound frames stop");
      return;
    }
    if (n > 0) SendToGuest(std::vector<uint8_t>(host_buf_.begin(), host_buf_.begin() + static_cast<long>(n)));
    ReadHost();
  });
}

void FrameBridge::SendToGuest(std::vector<uint8_t> frame) {
  // On the io thread. Inbound frames are delivered at once (they change guest
  // state, which the next checkpoint captures), asynchronously: QEMU stops
  // reading while the guest is paused, and the io thread must never block.
  // A full queue drops, as a congested link would; TCP resends.
  if (!guest_) return;
  std::vector<uint8_t> buf(4 + frame.size());
  uint32_t len = static_cast<uint32_t>(frame.size());
  buf[0] = static_cast<uint8_t>(len >> 24);
  buf[1] = static_cast<uint8_t>(len >> 16);
  buf[2] = static_cast<uint8_t>(len >> 8);
  buf[3] = static_cast<uint8_t>(len);
  std::memcpy(buf.data() + 4, frame.data(), frame.size());
  if (to_guest_.size() >= kMaxToGuest) {
    std::lock_guard<std::mutex> l(mu_);
    c_.dropped_to_guest++;
    return;
  }
  to_guest_.push_back(std::move(buf));
  if (to_guest_.size() == 1) WriteGuest();
}

void FrameBridge::WriteGuest() {
  auto g = guest_;
  asio::async_write(*g, asio::buffer(to_guest_.front()), [this, g](boost::system::error_code ec, size_t) {
    if (g != guest_) return;  // QEMU reconnected; its queue went with the old socket
    to_guest_.pop_front();
    if (!ec) {
      std::lock_guard<std::mutex> l(mu_);
      c_.to_guest++;
    }
    if (ec) {
      to_guest_.clear();
      return;
    }
    if (!to_guest_.empty()) WriteGuest();
  });
}

void FrameBridge::WriteToHost(const std::vector<uint8_t>& frame) {
  // One write per frame: TAP and SEQPACKET keep frame boundaries.
  ssize_t w = ::write(host_.native_handle(), frame.data(), frame.size());
  std::lock_guard<std::mutex> l(mu_);
  if (w == static_cast<ssize_t>(frame.size())) c_.to_host++;
}

void FrameBridge::Learn(const std::vector<uint8_t>& f) {
  if (f.size() < 14) return;
  uint16_t type = static_cast<uint16_t>(f[12] << 8 | f[13]);
  std::lock_guard<std::mutex> l(mu_);
  std::array<uint8_t, 6> mac;
  std::memcpy(mac.data(), &f[6], 6);
  if (mac[0] & 1) return;  // not a unicast source
  mac_ = mac;
  if (type == 0x0800 && f.size() >= 34) {  // IPv4: source address
    std::array<uint8_t, 4> ip;
    std::memcpy(ip.data(), &f[26], 4);
    ip_ = ip;
  } else if (type == 0x0806 && f.size() >= 42) {  // ARP: sender protocol address
    std::array<uint8_t, 4> ip;
    std::memcpy(ip.data(), &f[28], 4);
    ip_ = ip;
  }
}

Status FrameBridge::SetGuestAddress(const std::string& mac, const std::string& ipv4) {
  std::array<uint8_t, 6> m;
  unsigned v[6];
  if (std::sscanf(mac.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    return Status(Errc::kInvalidArgument, "bad MAC address '" + mac + "'");
  for (int i = 0; i < 6; ++i) m[i] = static_cast<uint8_t>(v[i]);
  std::array<uint8_t, 4> ip;
  unsigned a[4];
  if (std::sscanf(ipv4.c_str(), "%u.%u.%u.%u", &a[0], &a[1], &a[2], &a[3]) != 4 || a[0] > 255 || a[1] > 255 ||
      a[2] > 255 || a[3] > 255)
    return Status(Errc::kInvalidArgument, "bad IPv4 address '" + ipv4 + "'");
  for (int i = 0; i < 4; ++i) ip[i] = static_cast<uint8_t>(a[i]);
  std::lock_guard<std::mutex> l(mu_);
  mac_ = m;
  ip_ = ip;
  return Status::OK();
}

Status FrameBridge::Announce() {
  std::array<uint8_t, 6> mac;
  std::array<uint8_t, 4> ip;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!mac_ || !ip_) return Status(Errc::kNotFound, "guest address not learned yet");
    mac = *mac_;
    ip = *ip_;
  }
  std::vector<uint8_t> f(42, 0);
  std::memset(f.data(), 0xff, 6);                   // broadcast
  std::memcpy(&f[6], mac.data(), 6);
  f[12] = 0x08; f[13] = 0x06;                       // ARP
  f[14] = 0; f[15] = 1; f[16] = 0x08; f[17] = 0;    // Ethernet, IPv4
  f[18] = 6; f[19] = 4; f[20] = 0; f[21] = 1;       // request (gratuitous)
  std::memcpy(&f[22], mac.data(), 6);
  std::memcpy(&f[28], ip.data(), 4);
  std::memcpy(&f[38], ip.data(), 4);                // target = sender: an announcement
  WriteToHost(f);
  return Status::OK();
}

FrameBridge::Counters FrameBridge::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  return c_;
}

}  // namespace ftd
