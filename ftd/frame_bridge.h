// Carries the guest's Ethernet frames between QEMU and the host network,
// with output commit on the way out.
//
//   QEMU  -netdev stream,id=n0,server=off,addr.type=unix,addr.path=SOCK
//         connects to SOCK, where ftd listens; each frame on that stream is
//         a 4-byte big-endian length followed by the frame.
//   host  a TAP device (or, in tests, any fd that reads and writes one
//         frame per call, e.g. a SOCK_SEQPACKET socket).
//
// Guest -> host frames go through an OutputBuffer: they leave only when the
// epoch that produced them is acknowledged. Host -> guest frames are
// delivered at once. The bridge also learns the guest's MAC and IPv4
// address from its frames, so that after a takeover the new host can
// announce them (gratuitous ARP) and the network finds the guest again.
#ifndef FTSYNC_FTD_FRAME_BRIDGE_H_
#define FTSYNC_FTD_FRAME_BRIDGE_H_

#include <array>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "connection.h"
#include "ftsync/output_buffer.h"
#include "log.h"

namespace ftd {

// Opens (creating if needed) TAP device `name`, up; returns its fd.
ftsync::Result<int> OpenTap(const std::string& name);

class FrameBridge {
 public:
  // `host_fd` is owned by the bridge.
  FrameBridge(asio::io_context& io, int host_fd, StderrLogger* log);
  ~FrameBridge();

  // Listens on `path` for QEMU's netdev stream.
  ftsync::Status Listen(const std::string& path);

  // The device to add to the Checkpointer (guest -> host frames).
  ftsync::OutputBuffer& outbound() { return out_; }

  // Seeds the guest's address (from configuration), so a takeover can be
  // announced before the guest has sent anything. Frames still teach it.
  ftsync::Status SetGuestAddress(const std::string& mac, const std::string& ipv4);

  // A gratuitous ARP for the learned guest address, sent to the host side.
  // kNotFound until the guest has sent an IPv4 ARP or IP frame.
  ftsync::Status Announce();

  struct Counters {
    uint64_t from_guest = 0, to_guest = 0, to_host = 0, bad_frames = 0, dropped_to_guest = 0;
  };
  Counters counters() const;

 private:
  void AcceptGuest();
  void ReadGuest();
  void ReadHost();
  void SendToGuest(std::vector<uint8_t> frame);
  void WriteGuest();
  void WriteToHost(const std::vector<uint8_t>& frame);
  void Learn(const std::vector<uint8_t>& frame);

  asio::io_context& io_;
  StderrLogger* log_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::shared_ptr<asio::local::stream_protocol::socket> guest_;
  asio::posix::stream_descriptor host_;
  std::string path_;
  ftsync::OutputBuffer out_;
  std::vector<uint8_t> guest_buf_;
  std::array<uint8_t, 65536> host_buf_;
  std::array<uint8_t, 65536> read_buf_;
  std::deque<std::vector<uint8_t>> to_guest_;  // io thread only
  static constexpr size_t kMaxToGuest = 1024;
  mutable std::mutex mu_;
  std::optional<std::array<uint8_t, 6>> mac_;
  std::optional<std::array<uint8_t, 4>> ip_;
  Counters c_;
};

}  // namespace ftd

#endif  // FTSYNC_FTD_FRAME_BRIDGE_H_
