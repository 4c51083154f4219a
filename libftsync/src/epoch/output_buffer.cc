#include "ftsync/output_buffer.h"

namespace ftsync {

OutputBuffer::OutputBuffer(std::string name, std::function<void(const Item&)> release, size_t max_held_bytes)
    : name_(std::move(name)), release_(std::move(release)), max_held_(max_held_bytes) {
  groups_.push_back(Group{kOpen, {}});
}

void OutputBuffer::Append(Item item) {
  std::lock_guard<std::mutex> l(mu_);
  if (!protected_) {
    std::vector<Item> now;
    now.push_back(std::move(item));
    Deliver(now);
  } else if (c_.held_bytes + item.size() > max_held_) {
    c_.dropped_items++;
  } else {
    c_.held_items++;
    c_.held_bytes += item.size();
    groups_.back().items.push_back(std::move(item));
  }
}

// Called with mu_ held, so that items leave in append order even when the
// engine releases a group while the I/O thread appends.
void OutputBuffer::Deliver(std::vector<Item>& items) {
  for (const Item& i : items) {
    release_(i);
    c_.released_items++;
    c_.released_bytes += i.size();
  }
}

void OutputBuffer::ReleaseLocked(std::vector<Item>* out, uint64_t up_to) {
  while (!groups_.empty() && groups_.front().epoch != kOpen && groups_.front().epoch <= up_to) {
    for (Item& i : groups_.front().items) {
      c_.held_items--;
      c_.held_bytes -= i.size();
      out->push_back(std::move(i));
    }
    groups_.pop_front();
  }
}

void OutputBuffer::SetProtected(bool on) {
  std::vector<Item> out;
  {
    std::lock_guard<std::mutex> l(mu_);
    protected_ = on;
    if (on) return;
    // Everything held goes out now, the open group included.
    for (Group& g : groups_)
      for (Item& i : g.items) {
        c_.held_items--;
        c_.held_bytes -= i.size();
        out.push_back(std::move(i));
      }
    groups_.clear();
    groups_.push_back(Group{kOpen, {}});
    Deliver(out);
  }
}

Status OutputBuffer::Setup() {
  SetProtected(true);
  return Status::OK();
}

Status OutputBuffer::Postsuspend(uint64_t epoch) {
  std::lock_guard<std::mutex> l(mu_);
  Group& open = groups_.back();
  if (!groups_.empty() && groups_.size() >= 2 && groups_[groups_.size() - 2].epoch == epoch) {
    // The same epoch taken again after a retryable failure: merge.
    auto& prev = groups_[groups_.size() - 2].items;
    for (Item& i : open.items) prev.push_back(std::move(i));
    open.items.clear();
    return Status::OK();
  }
  open.epoch = epoch;
  groups_.push_back(Group{kOpen, {}});
  return Status::OK();
}

Status OutputBuffer::Commit(uint64_t epoch) {
  std::vector<Item> out;
  std::lock_guard<std::mutex> l(mu_);
  ReleaseLocked(&out, epoch);
  Deliver(out);
  return Status::OK();
}

void OutputBuffer::Teardown() { SetProtected(false); }

OutputBuffer::Counters OutputBuffer::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  return c_;
}

}  // namespace ftsync
