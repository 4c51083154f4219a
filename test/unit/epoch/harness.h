// A primary and a backup joined by in-memory pipes, for engine tests: a
// FakeDomain (optionally behind an ErrorInjectingDomain), a Checkpointer,
// and a Receiver running on its own thread into a replica directory.
#ifndef FTSYNC_TEST_UNIT_EPOCH_HARNESS_H_
#define FTSYNC_TEST_UNIT_EPOCH_HARNESS_H_

#include <condition_variable>
#include <map>
#include <mutex>
#include <memory>
#include <thread>
#include <vector>

#include "ftsync/checkpointer.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include "test_util.h"
#include "testing/error_injecting_domain.h"
#include "testing/fake_domain.h"

namespace ftsync::test {

// Records, at each Postsuspend (guest paused, before harvest), the memory
// and state the epoch will carry, and checks that Commit(n) comes only
// after the backup applied epoch n.
class SnapshotDevice : public CheckpointDevice {
 public:
  explicit SnapshotDevice(testing::FakeDomain* d) : d_(d) {}
  std::string Name() const override { return "snapshot"; }
  Status Setup() override { setups++; return Status::OK(); }
  Status Postsuspend(uint64_t e) override {
    if (!d_->suspended()) violations.push_back("postsuspend while running");
    memory[e] = d_->memory();
    auto st = d_->SaveState();
    if (st.ok()) state[e] = *st;
    phases.push_back("post" + std::to_string(e));
    return Status::OK();
  }
  Status Preresume(uint64_t e) override {
    if (!d_->suspended()) violations.push_back("preresume while running");
    phases.push_back("pre" + std::to_string(e));
    return Status::OK();
  }
  Status Commit(uint64_t e) override {
    if (receiver) {
      auto done = receiver->last_complete_epoch();
      if (!done || *done < e) violations.push_back("commit " + std::to_string(e) + " before the backup applied it");
    }
    if (!commits.empty() && commits.back() + 1 != e) violations.push_back("commit out of order");
    commits.push_back(e);
    phases.push_back("commit" + std::to_string(e));
    return Status::OK();
  }
  void Teardown() override { teardowns++; }

  testing::FakeDomain* d_;
  const Receiver* receiver = nullptr;
  std::map<uint64_t, std::vector<uint8_t>> memory, state;
  std::vector<uint64_t> commits;
  std::vector<std::string> phases, violations;
  int setups = 0, teardowns = 0;
};

// Passes writes to `inner` and records any made while the domain is paused:
// the network must never be inside the guest's pause.
class PauseCheckingSink : public ByteSink {
 public:
  PauseCheckingSink(ByteSink* inner, const testing::FakeDomain* d) : inner_(inner), d_(d) {}
  Status Write(std::span<const ConstBuffer> b) override {
    if (d_->suspended()) writes_while_paused++;
    return inner_->Write(b);
  }
  Status Close() override { return inner_->Close(); }
  int writes_while_paused = 0;

 private:
  ByteSink* inner_;
  const testing::FakeDomain* d_;
};

// Fails every write from byte `crash_at` on, after passing the bytes before
// it, and closes the pipe: the primary died at that byte.
class CrashingSink : public ByteSink {
 public:
  CrashingSink(ByteSink* inner, uint64_t crash_at) : inner_(inner), crash_at_(crash_at) {}
  Status Write(std::span<const ConstBuffer> bufs) override {
    if (crashed) return Status(Errc::kPeerGone, "primary crashed (test)");
    for (ConstBuffer b : bufs) {
      if (written_ + b.size() >= crash_at_ && crash_at_ != UINT64_MAX) {
        ConstBuffer head = b.first(crash_at_ - written_);
        (void)inner_->Write(head);
        written_ += head.size();
        crashed = true;
        (void)inner_->Close();
        return Status(Errc::kPeerGone, "primary crashed (test)");
      }
      FTSYNC_RETURN_IF_ERROR(inner_->Write(b));
      written_ += b.size();
    }
    return Status::OK();
  }
  Status Close() override { return inner_->Close(); }
  bool crashed = false;

 private:
  ByteSink* inner_;
  uint64_t crash_at_;
  uint64_t written_ = 0;
};

// Flips one bit at byte `at` of the stream.
class CorruptingSink : public ByteSink {
 public:
  CorruptingSink(ByteSink* inner, uint64_t at, uint8_t mask) : inner_(inner), at_(at), mask_(mask) {}
  Status Write(std::span<const ConstBuffer> bufs) override {
    for (ConstBuffer b : bufs) {
      if (at_ >= written_ && at_ < written_ + b.size()) {
        std::vector<uint8_t> copy(b.begin(), b.end());
        copy[at_ - written_] ^= mask_;
        FTSYNC_RETURN_IF_ERROR(inner_->Write(ConstBuffer(copy)));
        flipped = true;
      } else {
        FTSYNC_RETURN_IF_ERROR(inner_->Write(b));
      }
      written_ += b.size();
    }
    return Status::OK();
  }
  Status Close() override { return inner_->Close(); }
  bool flipped = false;

 private:
  ByteSink* inner_;
  uint64_t at_;
  uint8_t mask_;
  uint64_t written_ = 0;
};

// A back channel whose ACKs are held until the test lets them through.
class GatedSink : public ByteSink {
 public:
  explicit GatedSink(ByteSink* inner) : inner_(inner) {}
  Status Write(std::span<const ConstBuffer> b) override {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return open_ || writes_ < allowed_; });
    ++writes_;
    l.unlock();
    return inner_->Write(b);
  }
  Status Close() override { Open(); return inner_->Close(); }
  void Allow(int n) { std::lock_guard<std::mutex> l(mu_); allowed_ += n; cv_.notify_all(); }
  void Open() { std::lock_guard<std::mutex> l(mu_); open_ = true; cv_.notify_all(); }

 private:
  ByteSink* inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  int writes_ = 0, allowed_ = 0;
  bool open_ = false;
};

struct Harness {
  testing::FakeDomain dom;
  testing::ErrorInjectingDomain faulty{&dom};
  MemoryPipe fwd, back;
  TempDir dir;
  std::unique_ptr<ReplicaImage> replica;
  std::unique_ptr<Receiver> rx;
  std::thread rx_thread;
  Status rx_status;
  SnapshotDevice snap{&dom};

  // With `gate_acks`, the backup's back channel passes only what the test
  // allows through `gate` (Allow(1) lets the header out; Open() everything).
  std::unique_ptr<GatedSink> gate;

  explicit Harness(uint64_t frames, uint64_t seed = 1, bool gate_acks = false)
      : dom(frames, 4096, "fake", seed) {
    auto r = ReplicaImage::Open(dir.Sub("replica"));
    replica = std::move(r).value();
    if (gate_acks) gate = std::make_unique<GatedSink>(&back.sink());
    rx = std::make_unique<Receiver>(replica.get(), &fwd.source(), gate ? static_cast<ByteSink*>(gate.get()) : &back.sink());
    snap.receiver = rx.get();
  }
  ~Harness() {
    if (gate) gate->Open();
    Join();
  }

  void StartReceiver() {
    rx_thread = std::thread([this] {
      rx_status = rx->Handshake();
      if (rx_status.ok()) rx_status = rx->Run();
      (void)back.sink().Close();
    });
  }
  void Join() {
    if (rx_thread.joinable()) rx_thread.join();
  }

  // Replica frames and state equal the snapshot of epoch `e`.
  bool ReplicaEquals(uint64_t e, std::string* why) {
    auto reopened = ReplicaImage::Open(dir.Sub("replica"));
    if (!reopened.ok()) { *why = reopened.status().ToString(); return false; }
    auto info = (*reopened)->LastComplete();
    if (!info || info->epoch != e) { *why = "replica is not at epoch " + std::to_string(e); return false; }
    const auto& want = snap.memory.at(e);
    std::vector<uint8_t> page(4096);
    for (uint64_t p = 0; p < dom.FrameCount(); ++p) {
      if (!(*reopened)->ReadFrame(p, page.data()).ok()) { *why = "read failed"; return false; }
      if (std::memcmp(page.data(), want.data() + p * 4096, 4096) != 0) {
        *why = "frame " + std::to_string(p) + " differs";
        return false;
      }
    }
    auto st = (*reopened)->ReadState();
    if (!st.ok() || *st != snap.state.at(e)) { *why = "state differs"; return false; }
    return true;
  }
};

}  // namespace ftsync::test

#endif  // FTSYNC_TEST_UNIT_EPOCH_HARNESS_H_
