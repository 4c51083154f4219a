// Output commit: nothing the guest sends leaves before the backup has
// acknowledged the epoch that produced it.
#include <catch2/catch.hpp>

#include "epoch/harness.h"
#include "ftsync/output_buffer.h"
#include "testing/workload.h"

namespace ftsync {
namespace {
using test::Harness;

OutputBuffer::Item Tagged(uint64_t epoch, uint32_t seq) {
  OutputBuffer::Item i(12);
  std::memcpy(i.data(), &epoch, 8);
  std::memcpy(i.data() + 8, &seq, 4);
  return i;
}
uint64_t TagOf(const OutputBuffer::Item& i) {
  uint64_t e;
  std::memcpy(&e, i.data(), 8);
  return e;
}

TEST_CASE("output buffer: an item leaves only after its epoch is ACKed, in order", "[epoch][output]") {
  Harness h(64);
  h.StartReceiver();
  std::vector<std::string> violations;
  std::vector<uint32_t> order;
  OutputBuffer out("net", [&](const OutputBuffer::Item& i) {
    uint64_t e = TagOf(i);
    auto done = h.rx->last_complete_epoch();
    if (!done || *done < e) violations.push_back("item of epoch " + std::to_string(e) + " left early");
    uint32_t seq;
    std::memcpy(&seq, i.data() + 8, 4);
    order.push_back(seq);
  });
  CheckpointerOptions o;
  o.max_in_flight = 3;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.AddDevice(&out).ok());
  REQUIRE(cp.Start().ok());
  testing::Workload w(testing::WorkloadKind::kHotPages, 9);
  uint32_t seq = 0;
  for (uint64_t e = 1; e <= 30; ++e) {
    // While the guest runs toward checkpoint e, its output belongs to e.
    for (int k = 0; k < 5; ++k) out.Append(Tagged(e, seq++));
    REQUIRE(w.Step(&h.dom).ok());
    REQUIRE(cp.Checkpoint().ok());
    REQUIRE(cp.PollBackChannel(0).ok());
  }
  REQUIRE(cp.Finish().ok());
  h.Join();
  CHECK(violations.empty());
  REQUIRE(order.size() == seq);
  for (uint32_t i = 0; i < seq; ++i) CHECK(order[i] == i);
}

TEST_CASE("output buffer: with the backup's ACKs delayed nothing leaves; then all of it, in order",
          "[epoch][output]") {
  Harness h(32, 1, /*gate_acks=*/true);
  h.StartReceiver();
  h.gate->Allow(1);  // the back-channel header only: every ACK is held
  std::vector<uint64_t> released;
  OutputBuffer out("net", [&](const OutputBuffer::Item& i) { released.push_back(TagOf(i)); });
  CheckpointerOptions o;
  o.max_in_flight = 8;
  Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source(), o);
  REQUIRE(cp.AddDevice(&out).ok());
  REQUIRE(cp.Start().ok());
  for (uint64_t e = 1; e <= 5; ++e) {
    out.Append(Tagged(e, 0));
    h.dom.Fill(e, static_cast<uint8_t>(e));
    REQUIRE(cp.Checkpoint().ok());
    REQUIRE(cp.PollBackChannel(20).ok());
  }
  CHECK(released.empty());                      // sent, but not acknowledged
  CHECK(cp.last_acked_epoch() == -1);
  CHECK(out.counters().held_items == 5);
  h.gate->Open();                               // the ACKs arrive
  REQUIRE(cp.WaitForAck(5).ok());
  CHECK(released == std::vector<uint64_t>{1, 2, 3, 4, 5});
  REQUIRE(cp.Finish().ok());
}

TEST_CASE("output buffer: held while ACKs are delayed, released when they come", "[epoch][output]") {
  OutputBuffer::Counters c;
  std::vector<OutputBuffer::Item> released;
  OutputBuffer out("console", [&](const OutputBuffer::Item& i) { released.push_back(i); });
  REQUIRE(out.Setup().ok());
  out.Append({'a'});
  REQUIRE(out.Postsuspend(1).ok());
  out.Append({'b'});
  REQUIRE(out.Postsuspend(2).ok());
  out.Append({'c'});
  CHECK(released.empty());
  c = out.counters();
  CHECK(c.held_items == 3);
  REQUIRE(out.Commit(1).ok());  // ACK(1)
  REQUIRE(released.size() == 1);
  CHECK(released[0] == OutputBuffer::Item{'a'});
  REQUIRE(out.Commit(2).ok());
  REQUIRE(released.size() == 2);
  CHECK(released[1] == OutputBuffer::Item{'b'});
  // 'c' belongs to epoch 3, not yet checkpointed.
  CHECK(out.counters().held_items == 1);
  // The backup is lost: the VM runs unprotected and its output flows again.
  out.SetProtected(false);
  REQUIRE(released.size() == 3);
  out.Append({'d'});
  REQUIRE(released.size() == 4);
  CHECK(out.counters().released_bytes == 4);
}

TEST_CASE("output buffer: a retried epoch keeps its output together", "[epoch][output]") {
  std::vector<OutputBuffer::Item> released;
  OutputBuffer out("net", [&](const OutputBuffer::Item& i) { released.push_back(i); });
  REQUIRE(out.Setup().ok());
  out.Append({1});
  REQUIRE(out.Postsuspend(1).ok());  // epoch 1 failed before reaching the stream...
  out.Append({2});
  REQUIRE(out.Postsuspend(1).ok());  // ...and was taken again
  REQUIRE(out.Commit(1).ok());
  CHECK(released == std::vector<OutputBuffer::Item>{{1}, {2}});
}

TEST_CASE("output buffer: past its limit it drops, never releases early", "[epoch][output]") {
  std::vector<OutputBuffer::Item> released;
  OutputBuffer out("net", [&](const OutputBuffer::Item& i) { released.push_back(i); }, 10);
  REQUIRE(out.Setup().ok());
  out.Append(OutputBuffer::Item(8));
  out.Append(OutputBuffer::Item(8));  // over 10 bytes held
  CHECK(released.empty());
  CHECK(out.counters().dropped_items == 1);
  REQUIRE(out.Postsuspend(1).ok());
  REQUIRE(out.Commit(1).ok());
  CHECK(released.size() == 1);
}

TEST_CASE("output buffer: a failed session releases what it held (unprotected)", "[epoch][output]") {
  Harness h(16);
  h.StartReceiver();
  std::vector<OutputBuffer::Item> released;
  OutputBuffer out("net", [&](const OutputBuffer::Item& i) { released.push_back(i); });
  {
    Checkpointer cp(&h.dom, &h.fwd.sink(), &h.back.source());
    REQUIRE(cp.AddDevice(&out).ok());
    REQUIRE(cp.Start().ok());
    REQUIRE(cp.WaitForAck(0).ok());
    out.Append({7});
    h.back.CloseReader();  // nothing more can be acknowledged
    h.dom.Fill(1, 1);
    (void)cp.Checkpoint();
    CHECK(released.empty());
    (void)h.fwd.sink().Close();
  }  // the session ends: devices torn down
  CHECK(released.size() == 1);
  h.Join();
}

}  // namespace
}  // namespace ftsync
