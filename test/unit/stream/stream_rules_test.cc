// One test per "must be rejected" rule of libftsync/doc/stream-format.md.
// Each bad stream follows two good epochs, and each test checks that the
// error names the rule, that the backup sent NACK where it could, and that
// the replica still holds exactly the last complete epoch.
#include <catch2/catch.hpp>

#include "ftsync/checkpointer.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"
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
  (void)c.w.WriteRecord(kPageDelta, {});
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

}  // namespace
}  // namespace ftsync
