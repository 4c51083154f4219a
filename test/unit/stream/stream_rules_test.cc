// One test per "must be rejected" rule of libftsync/doc/stream-format.md.
// Each bad stream follows two good epochs, and each test checks that the
// error names the rule, that the backup sent NACK where it could, and that
// the replica still holds exactly the last complete epoch.
#include <catch2/catch.hpp>

#include "ftsync/checkpointer.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
#include <functional>
#include <optional>
#include <tuple>

#include "diff/page_delta.h"
#include "diff/shadow_store.h"
#include "stream/compression.h"
#include "stream/format.h"
#include "stream/forward_validator.h"
#include "stream/record_reader.h"
#include "stream/records.h"
#include "test_util.h"

namespace ftsync {
namespace {
using namespace internal;
using test::BufferSource;
using test::PatternPage;
using test::StreamBuilder;
using test::TempDir;
using test::VectorSink;

struct Outcome {
  Status status;
  std::vector<uint8_t> back;
  std::optional<ReplicaInfo> replica;
  ReceiverStats stats;
};

Outcome Receive(const std::vector<uint8_t>& bytes, const TempDir& dir, size_t chunk = 1 << 20) {
  Outcome o;
  auto rep = ReplicaImage::Open(dir.Sub("replica"));
  REQUIRE(rep.ok());
  BufferSource in(bytes, chunk);
  VectorSink back(&o.back);
  Receiver r(rep->get(), &in, &back);
  o.status = r.Handshake();
  if (o.status.ok()) o.status = r.Run();
  o.stats = r.stats();
  o.replica = (*rep)->LastComplete();
  return o;
}

// The good prefix: epoch 0 (all 8 frames) and epoch 1 (frames 1 and 2).
StreamBuilder GoodPrefix() {
  StreamBuilder b;
  b.Header().Epoch(0).Epoch(1, {1, 2});
  return b;
}

// The replica holds epoch 1 exactly: frames 1, 2 from epoch 1, others epoch 0.
void CheckReplicaAtEpoch1(const TempDir& dir) {
  auto rep = ReplicaImage::Open(dir.Sub("replica"));
  REQUIRE(rep.ok());
  auto info = (*rep)->LastComplete();
  REQUIRE(info.has_value());
  CHECK(info->epoch == 1);
  std::vector<uint8_t> page(4096);
  for (uint64_t p = 0; p < 8; ++p) {
    REQUIRE((*rep)->ReadFrame(p, page.data()).ok());
    CHECK(page == PatternPage(p, (p == 1 || p == 2) ? 1 : 0));
  }
  auto state = (*rep)->ReadState();
  REQUIRE(state.ok());
  CHECK(std::string(state->begin(), state->end()) == "state of epoch 1");
}

// The back channel ends with NACK(reason); returns its message.
std::string ExpectNack(const std::vector<uint8_t>& back, uint32_t reason) {
  BufferSource src(back);
  RecordReader rd(&src, true);
  REQUIRE(rd.ReadHeader().ok());
  for (;;) {
    auto r = rd.Next();
    REQUIRE(r.ok());
    if (r->type == kNack) {
      auto n = ParseNack(r->body);
      REQUIRE(n.ok());
      CHECK(n->reason == reason);
      return n->message;
    }
  }
}

void ExpectRejected(std::vector<uint8_t> bytes, const char* rule, Errc code) {
  TempDir dir;
  Outcome o = Receive(bytes, dir);
  INFO(o.status.ToString());
  CHECK(o.status.code() == code);
  CHECK(o.status.context().find(std::string("[") + rule + "]") != std::string::npos);
  uint32_t reason = code == Errc::kProtocol ? kNackProtocol : kNackCorruption;
  std::string msg = ExpectNack(o.back, reason);
  CHECK(msg.find(std::string("[") + rule + "]") != std::string::npos);
  CheckReplicaAtEpoch1(dir);
}

// ---- a good stream first: the baseline every rule test departs from ----

TEST_CASE("stream: a valid stream is applied and acknowledged", "[stream]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.Heartbeat(1, 2);
  (void)b.w.End();
  TempDir dir;
  Outcome o = Receive(b.bytes, dir, 7);  // odd chunks: records straddle reads
  REQUIRE(o.status.ok());
  CheckReplicaAtEpoch1(dir);
  CHECK(o.stats.epochs_applied == 2);
  CHECK(o.stats.heartbeats_received == 1);
  // Back channel: header, ACK(0), ACK(1), END.
  BufferSource src(o.back);
  RecordReader rd(&src, true);
  auto h = rd.ReadHeader();
  REQUIRE(h.ok());
  CHECK(h->session == 0x5e55);
  std::vector<uint64_t> acks;
  for (;;) {
    auto r = rd.Next();
    REQUIRE(r.ok());
    if (r->type == kEnd) break;
    REQUIRE(r->type == kAck);
    acks.push_back(ParseAck(r->body)->epoch);
  }
  CHECK(acks == std::vector<uint64_t>{0, 1});
}

TEST_CASE("stream: unknown optional records are skipped", "[stream]") {
  StreamBuilder b = GoodPrefix();
  uint8_t junk[5] = {1, 2, 3, 4, 5};
  ConstBuffer part(junk, 5);
  (void)b.w.WriteRecord(0x77 | kOptionalBit, std::span(&part, 1));
  (void)b.w.End();
  TempDir dir;
  REQUIRE(Receive(b.bytes, dir).status.ok());
  CheckReplicaAtEpoch1(dir);
}

// ---- stream header ----

void ExpectHeaderRejected(std::vector<uint8_t> bytes, const char* rule, Errc code) {
  TempDir dir;
  Outcome o = Receive(bytes, dir);
  INFO(o.status.ToString());
  CHECK(o.status.code() == code);
  CHECK(o.status.context().find(std::string("[") + rule + "]") != std::string::npos);
  CHECK_FALSE(o.replica.has_value());
}

TEST_CASE("H1: bad magic is rejected", "[stream][rule]") {
  auto b = GoodPrefix().bytes;
  b[0] = 'X';
  ExpectHeaderRejected(b, "H1", Errc::kCorruption);
}

TEST_CASE("H2: another version is rejected naming both versions", "[stream][rule]") {
  StreamBuilder sb;
  sb.h.version = 2;
  sb.Header().Epoch(0);
  TempDir dir;
  Outcome o = Receive(sb.bytes, dir);
  CHECK(o.status.code() == Errc::kVersion);
  CHECK(o.status.context().find("[H2]") != std::string::npos);
  CHECK(o.status.context().find("version 2") != std::string::npos);
  CHECK(o.status.context().find("version 1") != std::string::npos);
  ExpectNack(o.back, kNackVersion);
}

TEST_CASE("H3: header checksum mismatch is rejected", "[stream][rule]") {
  auto b = GoodPrefix().bytes;
  b[24] ^= 0x01;  // frame_count changed, checksum not recomputed
  ExpectHeaderRejected(b, "H3", Errc::kCorruption);
}

TEST_CASE("H4: reserved header bits are rejected", "[stream][rule]") {
  auto b = GoodPrefix().bytes;
  b[12] |= 0x02;
  test::RechecksumHeader(&b);
  ExpectHeaderRejected(b, "H4", Errc::kCorruption);
  b = GoodPrefix().bytes;
  b[21] = 1;
  test::RechecksumHeader(&b);
  ExpectHeaderRejected(b, "H4", Errc::kCorruption);
}

TEST_CASE("H5: bad page size is rejected", "[stream][rule]") {
  for (uint32_t ps : {0u, 2048u, 4097u, 131072u}) {
    auto b = GoodPrefix().bytes;
    PutLE32(&b[16], ps);
    test::RechecksumHeader(&b);
    ExpectHeaderRejected(b, "H5", Errc::kCorruption);
  }
}

TEST_CASE("H6: frame count out of range is rejected", "[stream][rule]") {
  for (uint64_t fc : {uint64_t{0}, (uint64_t{1} << 40) + 1}) {
    auto b = GoodPrefix().bytes;
    PutLE64(&b[24], fc);
    test::RechecksumHeader(&b);
    ExpectHeaderRejected(b, "H6", Errc::kCorruption);
  }
}

TEST_CASE("H7: session 0 is rejected", "[stream][rule]") {
  auto b = GoodPrefix().bytes;
  PutLE64(&b[32], 0);
  test::RechecksumHeader(&b);
  ExpectHeaderRejected(b, "H7", Errc::kCorruption);
}

TEST_CASE("H8: wrong direction, or a back channel that does not echo, is rejected",
          "[stream][rule]") {
  auto b = GoodPrefix().bytes;
  b[12] |= 0x01;
  test::RechecksumHeader(&b);
  ExpectHeaderRejected(b, "H8", Errc::kProtocol);

  StreamHeader f;
  f.frame_count = 8;
  f.session = 3;
  StreamHeader back = f;
  back.back_channel = true;
  CHECK(CheckEchoedHeader(f, back).ok());
  back.session = 4;
  Status s = CheckEchoedHeader(f, back);
  CHECK(s.code() == Errc::kProtocol);
  CHECK(s.context().find("[H8]") != std::string::npos);
}

TEST_CASE("H9: a stream that ends inside the header is rejected", "[stream][rule]") {
  auto b = GoodPrefix().bytes;
  b.resize(20);
  ExpectHeaderRejected(b, "H9", Errc::kCorruption);
}

// ---- record framing ----

TEST_CASE("R1: a length above the type's maximum is rejected before allocation",
          "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  uint8_t hdr[16];
  PutLE32(hdr, kDeviceState);
  PutLE32(hdr + 4, 0xfffffff0u);  // ~4 GiB: must not be allocated
  PutLE64(hdr + 8, 0);
  b.bytes.insert(b.bytes.end(), hdr, hdr + 16);
  ExpectRejected(b.bytes, "R1", Errc::kCorruption);
}

TEST_CASE("R2: a body checksum mismatch is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  size_t at = b.size();
  (void)b.w.EpochBegin(2);
  b.Pages(2, {3});
  b.bytes[at + 32 + 16 + 8 + 8 + 100] ^= 0x40;  // inside the page data of epoch 2
  ExpectRejected(b.bytes, "R2", Errc::kCorruption);
}

TEST_CASE("R2: a damaged record header field is caught by the checksum", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  size_t at = b.size();
  (void)b.w.EpochBegin(2);
  b.bytes[at] = kHeartbeat;  // type changed; HEARTBEAT has the same length
  ExpectRejected(b.bytes, "R2", Errc::kCorruption);
}

TEST_CASE("R3: non-zero padding is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  uint8_t three[3] = {1, 2, 3};
  (void)b.w.DeviceState(three);
  b.bytes[b.size() - 1] = 0xff;  // last padding byte
  ExpectRejected(b.bytes, "R3", Errc::kCorruption);
}

TEST_CASE("R4: an unknown mandatory record is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.WriteRecord(0x77, {});
  ExpectRejected(b.bytes, "R4", Errc::kCorruption);
  // Reserved numbers are unknown to version 1.
  StreamBuilder c = GoodPrefix();
  (void)c.w.WriteRecord(kHashList, {});
  ExpectRejected(c.bytes, "R4", Errc::kCorruption);
}

TEST_CASE("R4: type number 0 is never valid, even marked optional", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.WriteRecord(kOptionalBit, {});
  ExpectRejected(b.bytes, "R4", Errc::kCorruption);
}

TEST_CASE("R5: a known type marked optional is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  uint8_t body[16] = {2};
  ConstBuffer part(body, 16);
  (void)b.w.WriteRecord(kEpochBegin | kOptionalBit, std::span(&part, 1));
  ExpectRejected(b.bytes, "R5", Errc::kCorruption);
}

TEST_CASE("R6: a stream that ends inside a record is a broken session", "[stream][rule]") {
  // On a live session a cut record means the primary died mid-write: the
  // backup discards the open epoch and fails over (no NACK: nobody listens).
  for (size_t cut : {size_t{1000}, size_t{20}}) {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    if (cut == 1000) b.Pages(2, {3, 4});
    b.bytes.resize(b.size() - cut);
    TempDir dir;
    Outcome o = Receive(b.bytes, dir);
    INFO(o.status.ToString());
    CHECK(o.status.IsFailover());
    CHECK(o.status.context().find("[R6]") != std::string::npos);
    CHECK(o.status.context().find("[O10]") != std::string::npos);
    CHECK(o.stats.discarded_epochs == (cut == 1000 ? 1u : 0u));  // 20: EPOCH_BEGIN itself cut
    CheckReplicaAtEpoch1(dir);
  }
}

TEST_CASE("R7: a body that does not match its layout is rejected", "[stream][rule]") {
  SECTION("EPOCH_BEGIN of 8 bytes") {
    StreamBuilder b = GoodPrefix();
    uint8_t body[8] = {2};
    ConstBuffer part(body, 8);
    (void)b.w.WriteRecord(kEpochBegin, std::span(&part, 1));
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
  SECTION("EPOCH_BEGIN reserved field set") {
    StreamBuilder b = GoodPrefix();
    uint8_t body[16] = {2};
    body[12] = 1;
    ConstBuffer part(body, 16);
    (void)b.w.WriteRecord(kEpochBegin, std::span(&part, 1));
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
  SECTION("PAGE_DATA whose count disagrees with its length") {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    std::vector<uint8_t> body(8 + 2 * 8 + 4096);  // count says 2, one page present
    PutLE32(body.data(), 2);
    ConstBuffer part(body);
    (void)b.w.WriteRecord(kPageData, std::span(&part, 1));
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
  SECTION("PAGE_DATA with count 0") {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    std::vector<uint8_t> body(8);
    ConstBuffer part(body);
    (void)b.w.WriteRecord(kPageData, std::span(&part, 1));
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
}

TEST_CASE("R8: a back-channel type on the forward stream is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.Ack(1);
  ExpectRejected(b.bytes, "R8", Errc::kProtocol);
}

// ---- ordering ----

TEST_CASE("O1: epoch records with no open epoch are rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  b.Pages(2, {1});
  ExpectRejected(b.bytes, "O1", Errc::kProtocol);
  StreamBuilder c = GoodPrefix();
  (void)c.w.EpochCommit(1, 0);
  ExpectRejected(c.bytes, "O1", Errc::kProtocol);
}

TEST_CASE("O2: EPOCH_BEGIN inside an open epoch is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  (void)b.w.EpochBegin(3);
  ExpectRejected(b.bytes, "O2", Errc::kProtocol);
}

TEST_CASE("O3: an epoch number out of sequence is rejected", "[stream][rule]") {
  for (uint64_t e : {uint64_t{1}, uint64_t{3}, uint64_t{100}}) {
    StreamBuilder b = GoodPrefix();
    b.Epoch(e, {1});
    ExpectRejected(b.bytes, "O3", Errc::kProtocol);
  }
  StreamBuilder first;  // the first epoch must be 0
  first.Header().Epoch(1, {1});
  TempDir dir;
  Outcome o = Receive(first.bytes, dir);
  CHECK(o.status.context().find("[O3]") != std::string::npos);
  CHECK_FALSE(o.replica.has_value());
}

TEST_CASE("O4: a commit of another epoch is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  b.State(2);
  (void)b.w.EpochCommit(3, 0);
  ExpectRejected(b.bytes, "O4", Errc::kProtocol);
}

TEST_CASE("O5: a commit whose page count differs is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  b.Pages(2, {3, 4});
  b.State(2);
  (void)b.w.EpochCommit(2, 3);  // a PAGE_DATA record went missing
  ExpectRejected(b.bytes, "O5", Errc::kCorruption);
}

TEST_CASE("O6: an epoch without, or with two, DEVICE_STATE is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  b.Pages(2, {3});
  (void)b.w.EpochCommit(2, 1);
  ExpectRejected(b.bytes, "O6", Errc::kProtocol);
  StreamBuilder c = GoodPrefix();
  (void)c.w.EpochBegin(2);
  c.State(2).State(2);
  ExpectRejected(c.bytes, "O6", Errc::kProtocol);
}

TEST_CASE("O7: an epoch 0 that misses a frame is rejected", "[stream][rule]") {
  StreamBuilder b;
  b.Header();
  (void)b.w.EpochBegin(0);
  b.Pages(0, {0, 1, 2, 3, 4, 5, 6});  // frame 7 missing
  b.Pages(0, {6});                    // a resend does not make up for it
  b.State(0);
  (void)b.w.EpochCommit(0, 8);
  TempDir dir;
  Outcome o = Receive(b.bytes, dir);
  CHECK(o.status.code() == Errc::kProtocol);
  CHECK(o.status.context().find("[O7]") != std::string::npos);
  CHECK_FALSE(o.replica.has_value());
  ExpectNack(o.back, kNackProtocol);
}

TEST_CASE("O7: a failed resync keeps the previous complete replica", "[stream][rule]") {
  TempDir dir;
  REQUIRE(Receive(GoodPrefix().bytes, dir).replica.has_value());
  StreamBuilder again(8, 0x7777);  // a new session, incomplete epoch 0
  again.Header();
  (void)again.w.EpochBegin(0);
  again.Pages(5, {0, 1, 2});
  again.State(0);
  (void)again.w.EpochCommit(0, 3);
  Outcome o = Receive(again.bytes, dir);
  CHECK(o.status.context().find("[O7]") != std::string::npos);
  CheckReplicaAtEpoch1(dir);
}

TEST_CASE("O8: a pfn at or above frame_count is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  b.Pages(2, {3, 8});
  ExpectRejected(b.bytes, "O8", Errc::kCorruption);
}

TEST_CASE("O9: END inside an epoch, or anything after END, is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  (void)b.w.End();
  ExpectRejected(b.bytes, "O9", Errc::kProtocol);

  StreamBuilder c = GoodPrefix();
  (void)c.w.End();
  (void)c.w.Heartbeat(1, 1);
  TempDir dir;
  auto rep = ReplicaImage::Open(dir.Sub("replica"));
  BufferSource in(c.bytes);
  std::vector<uint8_t> back;
  VectorSink bs(&back);
  Receiver r(rep->get(), &in, &bs);
  REQUIRE(r.Handshake().ok());
  Result<bool> step = true;
  while (step.ok() && *step) step = r.Step();
  REQUIRE(step.ok());  // END reached
  // A reader that keeps going after END sees the violation.
  ForwardValidator v(StreamHeader{1, false, 4096, 8, 1});
  RecordView end{kEnd, {}, 0};
  REQUIRE(v.Feed(end).ok());
  RecordView hb{kHeartbeat, std::span<const uint8_t>(c.bytes.data() + c.size() - 16, 16), 1};
  auto after = v.Feed(hb);
  CHECK(after.status().context().find("[O9]") != std::string::npos);
}

TEST_CASE("O10: a stream that stops inside an epoch leaves the last complete epoch",
          "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  b.Pages(2, {1, 2, 3});
  b.State(2);  // no commit: the primary died
  TempDir dir;
  Outcome o = Receive(b.bytes, dir);
  CHECK(o.status.code() == Errc::kPeerGone);
  CHECK(o.status.IsFailover());
  CHECK(o.status.context().find("[O10]") != std::string::npos);
  CHECK(o.stats.discarded_epochs == 1);
  CheckReplicaAtEpoch1(dir);

  StreamBuilder c = GoodPrefix();  // between epochs, without END
  TempDir dir2;
  Outcome o2 = Receive(c.bytes, dir2);
  CHECK(o2.status.IsFailover());
  CheckReplicaAtEpoch1(dir2);
}

// ---- back channel (checked by the primary) ----

struct FakeBackup {
  std::vector<uint8_t> fwd;
  VectorSink fwd_sink{&fwd};
  MemoryPipe back;
  RecordWriter w{&back.sink()};
};

TEST_CASE("B1: an ACK for an epoch never sent, or not increasing, is rejected",
          "[stream][rule]") {
  for (uint64_t bad : {uint64_t{5}, uint64_t{0}}) {
    FakeBackup fb;
    // Any Domain works: the checkpointer fails before touching it again.
    struct TinyDomain : Domain {
      std::vector<uint8_t> mem = std::vector<uint8_t>(4 * 4096, 1);
      bool paused = false;
      std::string Name() const override { return "tiny"; }
      size_t PageSize() const override { return 4096; }
      uint64_t FrameCount() const override { return 4; }
      Status EnableDirtyLog() override { return Status::OK(); }
      Status DisableDirtyLog() override { return Status::OK(); }
      Status FetchAndClearDirty(DirtyBitmap* o) override { o->Resize(4); return Status::OK(); }
      Status Redirty(std::span<const uint64_t>) override { return Status::OK(); }
      Status Suspend() override { paused = true; return Status::OK(); }
      Status Resume() override { paused = false; return Status::OK(); }
      Status ReadFrames(std::span<const uint64_t> p, uint8_t* dst, std::span<int> e) override {
        for (size_t i = 0; i < p.size(); ++i) std::memcpy(dst + i * 4096, &mem[p[i] * 4096], 4096);
        return Status::OK();
      }
      Result<std::vector<uint8_t>> SaveState() override { return std::vector<uint8_t>{1}; }
      Status RestoreState(std::span<const uint8_t>) override { return Status::OK(); }
    } dom;
    CheckpointerOptions opts;
    opts.session = 9;
    Checkpointer cp(&dom, &fb.fwd_sink, &fb.back.source(), opts);
    StreamHeader h{1, true, 4096, 4, 9};
    REQUIRE(fb.w.WriteHeader(h).ok());
    REQUIRE(cp.Start().ok());
    REQUIRE(fb.w.Ack(0).ok());
    if (bad == 0) REQUIRE(fb.w.Ack(0).ok());  // repeated: not increasing
    else REQUIRE(fb.w.Ack(bad).ok());          // never sent
    Status s = cp.PollBackChannel(-1);
    if (bad == 0 && s.ok()) s = cp.PollBackChannel(-1);
    INFO(s.ToString());
    CHECK(s.code() == Errc::kProtocol);
    CHECK(s.context().find("[B1]") != std::string::npos);
    CHECK(cp.status().code() == Errc::kProtocol);  // sticky
  }
}

TEST_CASE("B2: a forward-only record on the back channel is rejected", "[stream][rule]") {
  std::vector<uint8_t> bytes;
  VectorSink sink(&bytes);
  RecordWriter w(&sink);
  StreamHeader h{1, true, 4096, 8, 1};
  REQUIRE(w.WriteHeader(h).ok());
  REQUIRE(w.EpochBegin(0).ok());
  BufferSource src(bytes);
  RecordReader rd(&src, true);
  REQUIRE(rd.ReadHeader().ok());
  auto r = rd.Next();
  CHECK(r.status().code() == Errc::kProtocol);
  CHECK(r.status().context().find("[B2]") != std::string::npos);
}

TEST_CASE("NACK from the backup stops the primary with its message", "[stream]") {
  FakeBackup fb;
  StreamHeader h{1, true, 4096, 1, 4};
  REQUIRE(fb.w.WriteHeader(h).ok());
  REQUIRE(fb.w.Nack(kNoEpoch, kNackNoSpace, "replica disk full").ok());
  BufferSource dummy({});
  RecordReader rd(&fb.back.source(), true);
  REQUIRE(rd.ReadHeader().ok());
  auto r = rd.Next();
  REQUIRE(r.ok());
  auto n = ParseNack(r->body);
  REQUIRE(n.ok());
  CHECK(n->message == "replica disk full");
  CHECK(n->reason == kNackNoSpace);
}


// ---- PAGE_DELTA (D1-D4) ----
namespace {

// A PAGE_DELTA body changing `pfn` from `base` to `cur` (RUNS or BLOCKS,
// whatever the encoder picks), naming `base_hash` as its base.
std::vector<uint8_t> DeltaBody(const std::vector<std::tuple<uint64_t, std::vector<uint8_t>, std::vector<uint8_t>>>& pages,
                               std::optional<uint64_t> base_hash = std::nullopt) {
  PageDeltaBuilder b;
  for (const auto& [pfn, base, cur] : pages) {
    uint8_t out[kMaxDeltaSize];
    EncodedDelta d = EncodePageDelta(base.data(), cur.data(), DeltaOptions{},
                                     std::span<uint8_t, kMaxDeltaSize>(out, kMaxDeltaSize));
    b.Add(pfn, base_hash.value_or(PageContentHash(base.data())), std::span<const uint8_t>(out, d.size));
  }
  auto body = b.body();
  return {body.begin(), body.end()};
}

// A page that differs from `p` in a few bytes.
std::vector<uint8_t> Touched(std::vector<uint8_t> p, uint8_t v) {
  p[10] = v;
  p[11] = v;
  p[4000] = v;
  return p;
}

void WriteDelta(StreamBuilder& b, const std::vector<uint8_t>& body) {
  ConstBuffer part(body);
  (void)b.w.WriteRecord(kPageDelta, std::span(&part, 1));
}

}  // namespace

TEST_CASE("PAGE_DELTA: deltas are applied on top of exactly their checked base", "[stream]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  // Frame 3 from epoch 0's copy; frame 1 from epoch 1's; frame 5 first sent
  // whole in this epoch, then changed by a delta against that copy; frame 6
  // changed twice (the second delta's base is the first's result).
  auto p3 = PatternPage(3, 0), p1 = PatternPage(1, 1), p6 = PatternPage(6, 0);
  b.Pages(2, {5});
  auto p5 = PatternPage(5, 2);
  WriteDelta(b, DeltaBody({{3, p3, Touched(p3, 0xA3)}, {1, p1, Touched(p1, 0xA1)},
                           {5, p5, Touched(p5, 0xA5)}, {6, p6, Touched(p6, 1)}}));
  WriteDelta(b, DeltaBody({{6, Touched(p6, 1), Touched(p6, 2)}}));
  b.State(2);
  (void)b.w.EpochCommit(2, 6);
  (void)b.w.End();
  TempDir dir;
  Outcome o = Receive(b.bytes, dir, 13);
  INFO(o.status.ToString());
  REQUIRE(o.status.ok());
  CHECK(o.stats.delta_pages_applied == 5);
  auto rep = ReplicaImage::Open(dir.Sub("replica"));
  REQUIRE(rep.ok());
  CHECK((*rep)->LastComplete()->epoch == 2);
  std::vector<uint8_t> page(4096);
  auto frame = [&](uint64_t p) {
    REQUIRE((*rep)->ReadFrame(p, page.data()).ok());
    return page;
  };
  CHECK(frame(3) == Touched(p3, 0xA3));
  CHECK(frame(1) == Touched(p1, 0xA1));
  CHECK(frame(5) == Touched(p5, 0xA5));
  CHECK(frame(6) == Touched(p6, 2));
  CHECK(frame(2) == PatternPage(2, 1));
  CHECK(frame(0) == PatternPage(0, 0));
}

TEST_CASE("D1: PAGE_DELTA in epoch 0 is rejected", "[stream][rule]") {
  StreamBuilder b;
  b.Header();
  (void)b.w.EpochBegin(0);
  auto p = PatternPage(0, 0);
  WriteDelta(b, DeltaBody({{0, p, Touched(p, 1)}}));
  TempDir dir;
  Outcome o = Receive(b.bytes, dir);
  INFO(o.status.ToString());
  CHECK(o.status.code() == Errc::kProtocol);
  CHECK(o.status.context().find("[D1]") != std::string::npos);
  CHECK(ExpectNack(o.back, kNackProtocol).find("[D1]") != std::string::npos);
  CHECK(!o.replica.has_value());
}

TEST_CASE("D2: PAGE_DELTA in a stream whose page size is not 4096 is rejected", "[stream][rule]") {
  StreamBuilder b;
  b.h.page_size = 8192;
  b.Header().Epoch(0).Epoch(1, {1});
  (void)b.w.EpochBegin(2);
  auto p = PatternPage(3, 0);
  WriteDelta(b, DeltaBody({{3, p, Touched(p, 1)}}));
  TempDir dir;
  Outcome o = Receive(b.bytes, dir);
  INFO(o.status.ToString());
  CHECK(o.status.code() == Errc::kProtocol);
  CHECK(o.status.context().find("[D2]") != std::string::npos);
  CHECK(ExpectNack(o.back, kNackProtocol).find("[D2]") != std::string::npos);
  REQUIRE(o.replica.has_value());
  CHECK(o.replica->epoch == 1);
}

TEST_CASE("D3: a malformed delta encoding is rejected", "[stream][rule]") {
  auto p = PatternPage(3, 0);
  uint64_t base = PageContentHash(p.data());
  std::vector<std::vector<uint8_t>> bad = {
      {0x07},                                      // unknown kind
      {0x01, 0x00},                                // SAME with a trailing byte
      {0x03, 0x05, 0x01},                          // BLOCKS with shift 5
      {0x04, 0x01, 0x00, 0x10, 0x00, 0x00, 0x00},  // RUNS: a run of length 0
      {0x04, 0x01, 0x00, 0xff, 0x0f, 0x02, 0x00, 1, 2},  // RUNS: past the page end
      {0x04, 0x02, 0x00, 0x10, 0x00, 0x02, 0x00, 1, 2, 0x11, 0x00, 0x01, 0x00, 3},  // overlap
  };
  for (const auto& enc : bad) {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    PageDeltaBuilder d;
    d.Add(3, base, enc);
    auto body = d.body();
    WriteDelta(b, {body.begin(), body.end()});
    ExpectRejected(b.bytes, "D3", Errc::kCorruption);
  }
}

TEST_CASE("D4: a delta whose base is not the backup's copy is rejected", "[stream][rule]") {
  // A base the backup never held.
  {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    auto p = PatternPage(3, 0);
    WriteDelta(b, DeltaBody({{3, p, Touched(p, 1)}}, 0x1234));
    ExpectRejected(b.bytes, "D4", Errc::kCorruption);
  }
  // A stale base: frame 1 as of epoch 0, but the backup holds epoch 1's.
  {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    auto p = PatternPage(1, 0);
    WriteDelta(b, DeltaBody({{1, p, Touched(p, 1)}}));
    b.State(2);
    (void)b.w.EpochCommit(2, 1);
    ExpectRejected(b.bytes, "D4", Errc::kCorruption);
  }
  // Within one epoch: the second delta names the original, not the first's result.
  {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    auto p = PatternPage(4, 0);
    WriteDelta(b, DeltaBody({{4, p, Touched(p, 1)}, {4, p, Touched(p, 2)}}));
    ExpectRejected(b.bytes, "D4", Errc::kCorruption);
  }
}

TEST_CASE("R7: a PAGE_DELTA body that does not match its layout is rejected", "[stream][rule]") {
  auto p = PatternPage(3, 0);
  std::vector<uint8_t> good = DeltaBody({{3, p, Touched(p, 1)}});
  std::vector<std::function<void(std::vector<uint8_t>&)>> edits = {
      [](auto& v) { v[0] = 0; },                      // count 0
      [](auto& v) { v[0] = 2; },                      // count 2, one entry
      [](auto& v) { v[5] = 1; },                      // reserved
      [](auto& v) { v[8 + 16] = 0; v[8 + 17] = 0; },  // entry length 0
      [](auto& v) { v.push_back(0); },                // a byte after the last entry
      [](auto& v) { v.resize(v.size() - 1); },        // entry cut short
  };
  for (auto& edit : edits) {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    auto body = good;
    edit(body);
    WriteDelta(b, body);
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
}

TEST_CASE("O8: a PAGE_DELTA pfn at or above frame_count is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  auto p = PatternPage(0, 0);
  WriteDelta(b, DeltaBody({{8, p, Touched(p, 1)}}));
  ExpectRejected(b.bytes, "O8", Errc::kCorruption);
}

TEST_CASE("O5: PAGE_DELTA entries count toward EPOCH_COMMIT's pages", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  auto p = PatternPage(3, 0);
  WriteDelta(b, DeltaBody({{3, p, Touched(p, 1)}}));
  b.State(2);
  (void)b.w.EpochCommit(2, 0);
  ExpectRejected(b.bytes, "O5", Errc::kCorruption);
}

// ---- COMPRESSED (C1-C5) ----
namespace {

// Writes a COMPRESSED record by hand: `body` compressed with `codec`
// (1 zlib, 2 zstd), then `edit` applied to the record's body.
void WriteCompressed(StreamBuilder& b, uint32_t inner, const std::vector<uint8_t>& body,
                     Codec codec = Codec::kZlib,
                     const std::function<void(std::vector<uint8_t>&)>& edit = nullptr) {
  auto c = Compressor::Create(codec, 0);
  REQUIRE(c.ok());
  std::vector<uint8_t> data;
  auto smaller = (*c)->Compress(body, body.size() + 4096, &data);
  REQUIRE(smaller.ok());
  REQUIRE(*smaller);
  std::vector<uint8_t> rec(kCompressedHeader);
  PutCompressedHeader(rec.data(), CompressedHeader{inner, static_cast<uint32_t>(body.size()),
                                                    RecordChecksum(inner, body.data(), body.size()),
                                                    static_cast<uint8_t>(codec)});
  rec.insert(rec.end(), data.begin(), data.end());
  if (edit) edit(rec);
  ConstBuffer part(rec);
  (void)b.w.WriteRecord(kCompressed, std::span(&part, 1));
}

std::vector<uint8_t> PageDataBody(uint64_t epoch, std::vector<uint64_t> pfns) {
  std::vector<uint8_t> v(8 + 8 * pfns.size());
  PutLE32(v.data(), static_cast<uint32_t>(pfns.size()));
  for (size_t i = 0; i < pfns.size(); ++i) PutLE64(v.data() + 8 + 8 * i, pfns[i]);
  for (uint64_t p : pfns) {
    auto page = PatternPage(p, epoch);
    v.insert(v.end(), page.begin(), page.end());
  }
  return v;
}

}  // namespace

TEST_CASE("COMPRESSED: compressed pages, deltas and state are applied like plain ones", "[stream]") {
  for (Codec codec : {Codec::kZlib, Codec::kZstd}) {
    StreamBuilder b = GoodPrefix();
    REQUIRE(b.w.SetCompression(codec, 0).ok());
    (void)b.w.EpochBegin(2);
    b.Pages(2, {4, 5});
    auto p3 = PatternPage(3, 0);
    WriteDelta(b, DeltaBody({{3, p3, Touched(p3, 9)}}));  // plain: too small to pay
    REQUIRE(b.w.PageDelta(DeltaBody({{6, PatternPage(6, 0), std::vector<uint8_t>(4096, 0x5a)}})).ok());
    b.State(2);
    (void)b.w.EpochCommit(2, 4);
    (void)b.w.End();
    CHECK(b.w.compress_out_bytes() < b.w.compress_in_bytes());
    TempDir dir;
    Outcome o = Receive(b.bytes, dir, 11);
    INFO(CodecName(codec) << ": " << o.status.ToString());
    REQUIRE(o.status.ok());
    auto rep = ReplicaImage::Open(dir.Sub("replica"));
    REQUIRE(rep.ok());
    std::vector<uint8_t> page(4096);
    REQUIRE((*rep)->ReadFrame(4, page.data()).ok());
    CHECK(page == PatternPage(4, 2));
    REQUIRE((*rep)->ReadFrame(3, page.data()).ok());
    CHECK(page == Touched(p3, 9));
    REQUIRE((*rep)->ReadFrame(6, page.data()).ok());
    CHECK(page == std::vector<uint8_t>(4096, 0x5a));
    auto state = (*rep)->ReadState();
    CHECK(std::string(state->begin(), state->end()) == "state of epoch 2");
  }
}

TEST_CASE("C1: an unknown codec is rejected", "[stream][rule]") {
  for (uint8_t codec : {0, 3, 255}) {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    WriteCompressed(b, kPageData, PageDataBody(2, {3}), Codec::kZlib,
                    [codec](auto& v) { v[16] = codec; });
    ExpectRejected(b.bytes, "C1", Errc::kCorruption);
  }
}

TEST_CASE("C2: a COMPRESSED record may wrap only pages, deltas or state", "[stream][rule]") {
  for (uint32_t inner : {uint32_t{kEpochCommit}, uint32_t{kCompressed}, uint32_t{kPageData} | kOptionalBit}) {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    WriteCompressed(b, kPageData, PageDataBody(2, {3}), Codec::kZlib,
                    [inner](auto& v) { PutLE32(v.data(), inner); });
    ExpectRejected(b.bytes, "C2", Errc::kCorruption);
  }
}

TEST_CASE("C3: an inner length of 0 or above the type's maximum is rejected", "[stream][rule]") {
  uint32_t max = static_cast<uint32_t>(MaxBodyLength(kPageData, 4096));
  for (uint32_t len : {0u, max + 1, 0xffffffffu}) {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    WriteCompressed(b, kPageData, PageDataBody(2, {3}), Codec::kZstd,
                    [len](auto& v) { PutLE32(v.data() + 4, len); });
    ExpectRejected(b.bytes, "C3", Errc::kCorruption);
  }
}

TEST_CASE("C4: data that does not decompress to exactly the inner length is rejected",
          "[stream][rule]") {
  for (Codec codec : {Codec::kZlib, Codec::kZstd}) {
    std::vector<std::function<void(std::vector<uint8_t>&)>> edits = {
        [](auto& v) { PutLE32(v.data() + 4, GetLE32(v.data() + 4) - 1); },  // a bomb: more than announced
        [](auto& v) { PutLE32(v.data() + 4, GetLE32(v.data() + 4) + 1); },  // fewer than announced
        [](auto& v) { v.resize(v.size() - 3); },                            // cut short
        [](auto& v) { v.push_back(0); },                                    // bytes after the end
        [](auto& v) { for (size_t i = kCompressedHeader; i < v.size(); ++i) v[i] ^= 0x5a; },  // garbage
    };
    for (auto& edit : edits) {
      StreamBuilder b = GoodPrefix();
      (void)b.w.EpochBegin(2);
      WriteCompressed(b, kPageData, PageDataBody(2, {3, 4}), codec, edit);
      ExpectRejected(b.bytes, "C4", Errc::kCorruption);
    }
  }
}

TEST_CASE("C5: a decompressed body whose checksum differs is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  WriteCompressed(b, kPageData, PageDataBody(2, {3}), Codec::kZlib, [](auto& v) { v[8] ^= 1; });
  ExpectRejected(b.bytes, "C5", Errc::kCorruption);
}

TEST_CASE("R7: a COMPRESSED header with reserved bytes or no data is rejected", "[stream][rule]") {
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  WriteCompressed(b, kPageData, PageDataBody(2, {3}), Codec::kZlib, [](auto& v) { v[20] = 1; });
  ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  StreamBuilder c = GoodPrefix();
  (void)c.w.EpochBegin(2);
  WriteCompressed(c, kPageData, PageDataBody(2, {3}), Codec::kZlib, [](auto& v) { v.resize(kCompressedHeader); });
  ExpectRejected(c.bytes, "R7", Errc::kCorruption);
}

TEST_CASE("O-rules apply to the record a COMPRESSED record wraps", "[stream][rule]") {
  // The inner PAGE_DATA names a pfn out of range (O8), and a compressed
  // second DEVICE_STATE is still a second one (O6).
  StreamBuilder b = GoodPrefix();
  (void)b.w.EpochBegin(2);
  WriteCompressed(b, kPageData, PageDataBody(2, {3, 9}));
  ExpectRejected(b.bytes, "O8", Errc::kCorruption);
  StreamBuilder c = GoodPrefix();
  (void)c.w.EpochBegin(2);
  c.State(2);
  WriteCompressed(c, kDeviceState, std::vector<uint8_t>(5000, 7));
  ExpectRejected(c.bytes, "O6", Errc::kProtocol);
}

// ---- SPEC_PAGE_DATA and SPEC_APPLY (S1, S2) ----

TEST_CASE("SPEC: speculative pages apply only when their epoch names them and commits", "[stream]") {
  StreamBuilder b = GoodPrefix();
  auto s3 = PatternPage(3, 9), s4 = PatternPage(4, 9), s5 = PatternPage(5, 9);
  std::vector<uint8_t> data;
  for (auto* p : {&s3, &s4, &s5}) data.insert(data.end(), p->begin(), p->end());
  const uint64_t pfns[] = {3, 4, 5};
  REQUIRE(b.w.SpecPageData(2, pfns, data.data(), 4096).ok());
  (void)b.w.Heartbeat(1, 1);
  // Epoch 2 names 3 and 4 (not 5); frame 4 was written again: a delta
  // against its speculative copy.
  (void)b.w.EpochBegin(2);
  const uint64_t named[] = {3, 4};
  REQUIRE(b.w.SpecApply(named).ok());
  PageDeltaBuilder d;
  uint8_t out[kMaxDeltaSize];
  EncodedDelta e = EncodePageDelta(s4.data(), Touched(s4, 0x44).data(), DeltaOptions{},
                                   std::span<uint8_t, kMaxDeltaSize>(out, kMaxDeltaSize));
  d.Add(4, PageContentHash(s4.data()), std::span<const uint8_t>(out, e.size));
  REQUIRE(b.w.PageDelta(d.body()).ok());
  b.State(2);
  (void)b.w.EpochCommit(2, 3);
  // Epoch 3 sends 6 ahead but the stream ends before epoch 3 commits.
  const uint64_t six[] = {6};
  REQUIRE(b.w.SpecPageData(3, six, PatternPage(6, 9).data(), 4096).ok());
  (void)b.w.End();
  TempDir dir;
  Outcome o = Receive(b.bytes, dir, 29);
  INFO(o.status.ToString());
  REQUIRE(o.status.ok());
  CHECK(o.stats.speculative_pages_applied == 2);
  auto rep = ReplicaImage::Open(dir.Sub("replica"));
  REQUIRE(rep.ok());
  std::vector<uint8_t> page(4096);
  auto frame = [&](uint64_t p) {
    REQUIRE((*rep)->ReadFrame(p, page.data()).ok());
    return page;
  };
  CHECK(frame(3) == s3);
  CHECK(frame(4) == Touched(s4, 0x44));
  CHECK(frame(5) == PatternPage(5, 0));  // staged, never named: dropped
  CHECK(frame(6) == PatternPage(6, 0));  // its epoch never committed
}

TEST_CASE("S1: SPEC_PAGE_DATA inside an epoch, or for another epoch, is rejected", "[stream][rule]") {
  const uint64_t pfn[] = {3};
  auto page = PatternPage(3, 9);
  {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    REQUIRE(b.w.SpecPageData(2, pfn, page.data(), 4096).ok());
    ExpectRejected(b.bytes, "S1", Errc::kProtocol);
  }
  for (uint64_t epoch : {uint64_t{1}, uint64_t{3}, uint64_t{0}}) {
    StreamBuilder b = GoodPrefix();
    REQUIRE(b.w.SpecPageData(epoch, pfn, page.data(), 4096).ok());
    ExpectRejected(b.bytes, "S1", Errc::kProtocol);
  }
}

TEST_CASE("S2: SPEC_APPLY of a frame with no staged copy for the epoch is rejected", "[stream][rule]") {
  const uint64_t three[] = {3}, four[] = {4};
  auto page = PatternPage(3, 9);
  {
    StreamBuilder b = GoodPrefix();
    REQUIRE(b.w.SpecPageData(2, three, page.data(), 4096).ok());
    (void)b.w.EpochBegin(2);
    REQUIRE(b.w.SpecApply(four).ok());
    ExpectRejected(b.bytes, "S2", Errc::kProtocol);
  }
  {
    // Staged for epoch 2, which committed without naming it: gone for epoch 3.
    StreamBuilder b = GoodPrefix();
    REQUIRE(b.w.SpecPageData(2, three, page.data(), 4096).ok());
    (void)b.w.EpochBegin(2);
    b.State(2);
    (void)b.w.EpochCommit(2, 0);
    (void)b.w.EpochBegin(3);
    REQUIRE(b.w.SpecApply(three).ok());
    TempDir dir;
    Outcome o = Receive(b.bytes, dir);
    CHECK(o.status.context().find("[S2]") != std::string::npos);
    CHECK(ExpectNack(o.back, kNackProtocol).find("[S2]") != std::string::npos);
    REQUIRE(o.replica.has_value());
    CHECK(o.replica->epoch == 2);
  }
}

TEST_CASE("O1/O8/R7: SPEC_APPLY between epochs, out-of-range pfns, bad speculative layouts", "[stream][rule]") {
  const uint64_t three[] = {3}, eight[] = {8};
  {
    StreamBuilder b = GoodPrefix();
    REQUIRE(b.w.SpecApply(three).ok());
    ExpectRejected(b.bytes, "O1", Errc::kProtocol);
  }
  {
    StreamBuilder b = GoodPrefix();
    REQUIRE(b.w.SpecPageData(2, eight, PatternPage(0, 0).data(), 4096).ok());
    ExpectRejected(b.bytes, "O8", Errc::kCorruption);
  }
  {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    REQUIRE(b.w.SpecApply(eight).ok());
    ExpectRejected(b.bytes, "O8", Errc::kCorruption);
  }
  {
    StreamBuilder b = GoodPrefix();
    uint8_t body[24] = {2, 0, 0, 0, 0, 0, 0, 0, 1};  // epoch 2, count 1, no pfn or page
    ConstBuffer part(body, sizeof body);
    (void)b.w.WriteRecord(kSpecPageData, std::span(&part, 1));
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
  {
    StreamBuilder b = GoodPrefix();
    (void)b.w.EpochBegin(2);
    uint8_t body[8] = {0};  // count 0
    ConstBuffer part(body, sizeof body);
    (void)b.w.WriteRecord(kSpecApply, std::span(&part, 1));
    ExpectRejected(b.bytes, "R7", Errc::kCorruption);
  }
}

}  // namespace
}  // namespace ftsync
