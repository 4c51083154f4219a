// PlugSchedule against a model of Linux's sch_plug (net/sched/sch_plug.c:
// one closed buffer, counts of packets, release from the head): with any
// number of epochs in flight no packet leaves before its epoch commits, and
// every packet leaves once a later epoch has committed.
#include <catch2/catch.hpp>

#include <deque>
#include <random>

#include "plug_schedule.h"

namespace ftd {
namespace {

// The kernel's state machine, packet by packet; each packet carries the
// epoch whose output it is.
class KernelPlug : public PlugControl {
 public:
  ftsync::Status Buffer() override {
    last_ = current_;
    current_ = 0;
    indefinite_ = false;
    ++buffers;
    return ftsync::Status::OK();
  }
  ftsync::Status ReleaseOne() override {
    to_release_ += last_;
    last_ = 0;
    Drain();
    return ftsync::Status::OK();
  }
  ftsync::Status ReleaseIndefinite() override {
    indefinite_ = true;
    to_release_ = last_ = current_ = 0;
    Drain();
    return ftsync::Status::OK();
  }
  void Enqueue(uint64_t epoch) {
    if (!indefinite_) ++current_;
    queue_.push_back(epoch);
    Drain();
  }
  std::vector<uint64_t> sent;  // epochs of the packets that left, in order
  size_t held() const { return queue_.size(); }
  int buffers = 0;

 private:
  void Drain() {
    while (!queue_.empty() && (indefinite_ || to_release_ > 0)) {
      if (!indefinite_) --to_release_;
      sent.push_back(queue_.front());
      queue_.pop_front();
    }
  }
  std::deque<uint64_t> queue_;
  uint64_t current_ = 0, last_ = 0, to_release_ = 0;
  bool indefinite_ = false;
};

TEST_CASE("plug schedule: one epoch in flight gives one barrier per epoch", "[netbuf]") {
  KernelPlug k;
  (void)k.ReleaseIndefinite();  // as NetBuffer::Create leaves the qdisc
  k.Enqueue(0);           // unprotected: passes
  REQUIRE(k.sent.size() == 1);
  PlugSchedule s(&k);
  REQUIRE(s.Start().ok());
  for (uint64_t e = 0; e < 5; ++e) {
    k.Enqueue(e);
    k.Enqueue(e);
    REQUIRE(s.Postsuspend(e).ok());
    REQUIRE(k.held() == 2);
    REQUIRE(s.Commit(e).ok());
    REQUIRE(k.held() == 0);
  }
  REQUIRE(k.buffers == 1 + 5);
  REQUIRE(s.Stop().ok());
}

TEST_CASE("plug schedule: a naive barrier per postsuspend would lose packets in sch_plug", "[netbuf]") {
  // The reason for the schedule: two barriers before one release overwrite
  // the kernel's count, and the first epoch's packets stay behind.
  KernelPlug k;
  (void)k.Buffer();
  k.Enqueue(1);
  (void)k.Buffer();  // barrier of epoch 1
  k.Enqueue(2);
  (void)k.Buffer();  // barrier of epoch 2: epoch 1's count is lost
  (void)k.ReleaseOne();  // "commit 1"
  REQUIRE(k.sent.size() == 1);  // one packet left...
  (void)k.ReleaseOne();  // "commit 2"
  REQUIRE(k.held() == 1);       // ...and one never will by count
}

TEST_CASE("plug schedule: random interleavings never release early and always drain", "[netbuf]") {
  std::mt19937_64 rng(GENERATE(1, 2, 3, 4, 5, 6, 7, 8));
  KernelPlug k;
  (void)k.ReleaseIndefinite();
  PlugSchedule s(&k);
  REQUIRE(s.Start().ok());
  const uint64_t kEpochs = 400;
  const uint64_t max_in_flight = 1 + rng() % 4;
  uint64_t committed = 0;  // epochs < committed have been committed
  bool any_committed = false;
  uint64_t next = 0;       // the epoch whose output the guest produces now
  size_t checked = 0;
  auto check = [&] {
    for (; checked < k.sent.size(); ++checked) {
      REQUIRE(any_committed);
      REQUIRE(k.sent[checked] < committed);  // never before its commit
    }
  };
  while (next < kEpochs || committed < kEpochs) {
    int r = static_cast<int>(rng() % 10);
    if (r < 4 && next < kEpochs) {
      k.Enqueue(next);
    } else if (r < 7 && next < kEpochs && next - committed < max_in_flight) {
      REQUIRE(s.Postsuspend(next).ok());
      if (rng() % 8 == 0) REQUIRE(s.Postsuspend(next).ok());  // a retried epoch
      ++next;
    } else if (committed < next) {
      REQUIRE(s.Commit(committed).ok());
      ++committed;
      any_committed = true;
    }
    check();
  }
  // Liveness: one more epoch, committed, lets every earlier packet out.
  REQUIRE(s.Postsuspend(kEpochs).ok());
  REQUIRE(s.Commit(kEpochs).ok());
  REQUIRE(k.held() == 0);
  for (size_t i = 1; i < k.sent.size(); ++i) REQUIRE(k.sent[i - 1] <= k.sent[i]);  // order kept
  REQUIRE(s.Stop().ok());
}

TEST_CASE("plug schedule: stop releases everything held and later packets pass", "[netbuf]") {
  KernelPlug k;
  PlugSchedule s(&k);
  REQUIRE(s.Start().ok());
  k.Enqueue(0);
  REQUIRE(s.Postsuspend(0).ok());
  k.Enqueue(1);
  REQUIRE(k.held() == 2);
  REQUIRE(s.Stop().ok());
  REQUIRE(k.held() == 0);
  k.Enqueue(2);
  REQUIRE(k.held() == 0);
  REQUIRE(s.Commit(0).ok());  // a late commit after stop: nothing to do
  REQUIRE(!s.holding());
}

}  // namespace
}  // namespace ftd
