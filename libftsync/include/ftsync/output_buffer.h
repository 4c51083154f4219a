// ftsync: output commit. An OutputBuffer is a checkpoint device that holds
// what the guest sends to the outside world (network frames, console bytes)
// until the backup has acknowledged the epoch whose state produced it.
//
// Items appended while the guest runs after epoch n-1's checkpoint belong to
// epoch n: Postsuspend(n) closes that group, Commit(n) (called only after
// ACK(n)) releases it, in order, through the release callback. An item read
// late (produced before the suspend, appended after it) lands in a later
// group: released later, never earlier.
//
// Without a session (no backup: the VM runs unprotected) items pass straight
// through; SetProtected(false) releases everything held, at once.
//
// Thread-safe: Append comes from the daemon's I/O thread, the phases from
// the epoch engine.
#ifndef FTSYNC_OUTPUT_BUFFER_H_
#define FTSYNC_OUTPUT_BUFFER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "ftsync/checkpoint_device.h"

namespace ftsync {

class OutputBuffer : public CheckpointDevice {
 public:
  using Item = std::vector<uint8_t>;
  // `release` receives each item once, in append order. It runs under the
  // buffer's lock (that is what keeps the order) and must not call back
  // into the buffer; keep it short (a write to a TAP device or a file).
  OutputBuffer(std::string name, std::function<void(const Item&)> release,
               size_t max_held_bytes = 64u << 20);

  // Queues an item (a frame, a run of console bytes). When more than
  // max_held_bytes are held the item is dropped and counted (a network drops
  // packets too; the guest's TCP resends): output is never released early.
  void Append(Item item);

  // Protected: hold items until their epoch commits. Unprotected: release
  // everything held now and let later items through at once.
  void SetProtected(bool on);

  std::string Name() const override { return name_; }
  Status Setup() override;
  Status Postsuspend(uint64_t epoch) override;
  Status Preresume(uint64_t epoch) override { return Status::OK(); }
  Status Commit(uint64_t epoch) override;
  void Teardown() override;

  struct Counters {
    uint64_t held_items = 0, held_bytes = 0;  // now
    uint64_t released_items = 0, released_bytes = 0, dropped_items = 0;
  };
  Counters counters() const;

 private:
  struct Group {
    uint64_t epoch;  // kOpen for the group still filling
    std::vector<Item> items;
  };
  static constexpr uint64_t kOpen = ~uint64_t{0};
  void ReleaseLocked(std::vector<Item>* out, uint64_t up_to_epoch);
  void Deliver(std::vector<Item>& items);

  std::string name_;
  std::function<void(const Item&)> release_;
  size_t max_held_;
  mutable std::mutex mu_;
  std::deque<Group> groups_;  // oldest first; the back one is open
  bool protected_ = false;
  Counters c_;
};

}  // namespace ftsync

#endif  // FTSYNC_OUTPUT_BUFFER_H_
