#include "ftsync/receiver.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "diff/page_delta.h"
#include "diff/shadow_store.h"

#include "stream/forward_validator.h"
#include "stream/record_reader.h"
#include "stream/record_writer.h"
#include "util/clock.h"

namespace ftsync {
using namespace internal;

struct Receiver::Impl {
  ReplicaImage* replica;
  ByteSource* in;
  ReceiverOptions opts;
  RecordReader reader;
  std::mutex back_mu;  // guards writer: ACKs and heartbeats come from two threads
  RecordWriter writer;
  std::unique_ptr<ForwardValidator> validator;
  StreamHeader header;
  Status sticky;
  bool handshaken = false;
  uint64_t heartbeats_sent = 0;  // guarded by back_mu
  bool back_header_written = false;  // guarded by back_mu
  bool back_ended = false;           // guarded by back_mu: END or NACK sent

  // The open epoch: PAGE_DATA bodies kept whole (epochs > 0), device state.
  std::vector<std::vector<uint8_t>> page_bodies;
  std::vector<std::vector<uint8_t>> spare_bodies;  // recycled buffers
  std::vector<uint8_t> state;
  // Epochs > 0: every page entry in stream order (the last one of a frame
  // wins), pointing into page_bodies or delta_pages.
  std::vector<PageWrite> writes;
  // The epoch's current copy of each frame it touched, built at its first
  // PAGE_DELTA (epochs of PAGE_DATA alone never pay for it).
  std::unordered_map<uint64_t, uint8_t*> staged;
  bool staged_built = false;
  // Pages a delta was applied to, when the frame had no copy in the epoch.
  std::vector<std::unique_ptr<uint8_t[]>> delta_pages;
  size_t delta_pages_used = 0;
  uint64_t delta_entries = 0;
  // Speculative pages staged for the next epoch (SPEC_PAGE_DATA): one copy
  // per frame, applied only when a SPEC_APPLY of that epoch names it.
  std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> spec;
  uint64_t spec_epoch = 0;
  uint64_t spec_applied = 0;

  mutable std::mutex stats_mu;
  ReceiverStats stats;
  std::atomic<uint64_t> last_activity_ns{0};

  Impl(ReplicaImage* r, ByteSource* i, ByteSink* b, ReceiverOptions o)
      : replica(r), in(i), opts(o), reader(i, false), writer(b) {
    if (!opts.logger) opts.logger = NullLogger();
  }

  Status Reject(const Status& s, uint64_t epoch) {
    uint32_t reason = kNackOther;
    switch (s.code()) {
      case Errc::kCorruption: reason = kNackCorruption; break;
      case Errc::kProtocol: reason = kNackProtocol; break;
      case Errc::kVersion: reason = kNackVersion; break;
      case Errc::kNoSpace: reason = kNackNoSpace; break;
      case Errc::kIoError: reason = kNackIo; break;
      default: break;
    }
    {
      std::lock_guard<std::mutex> lock(back_mu);
      (void)writer.Nack(epoch, reason, s.ToString());  // best effort: the peer may be gone
      back_ended = true;
    }
    opts.logger->Log(LogLevel::kError, "receiver: rejecting stream: " + s.ToString());
    return Fail(s);
  }

  Status Fail(const Status& s) {
    DiscardOpenEpoch();
    sticky = s;
    return s;
  }

  void DiscardOpenEpoch() {
    if (validator && validator->in_epoch()) {
      std::lock_guard<std::mutex> lock(stats_mu);
      stats.discarded_epochs++;
    }
    if (validator && validator->in_epoch() && validator->open_epoch() == 0) replica->AbortFull();
    RecycleBodies();
    spec.clear();
    state.clear();
  }

  void RecycleBodies() {
    // Keep a few buffers for the next epoch; more would only hold memory.
    for (auto& b : page_bodies)
      if (spare_bodies.size() < 64) spare_bodies.push_back(std::move(b));
    page_bodies.clear();
    writes.clear();
    staged.clear();
    staged_built = false;
    if (delta_pages.size() > 4096) delta_pages.resize(4096);
    delta_pages_used = 0;
    delta_entries = 0;
    spec_applied = 0;
  }

  // Keeps the reader's PAGE_DATA body (epochs > 0) and records its pages.
  void StagePageData() {
    std::vector<uint8_t> spare;
    if (!spare_bodies.empty()) {
      spare = std::move(spare_bodies.back());
      spare_bodies.pop_back();
    }
    page_bodies.push_back(reader.TakeBody(std::move(spare)));
    std::vector<uint8_t>& body = page_bodies.back();
    const uint32_t ps = header.page_size;
    PageDataView v = *ParsePageData(body, ps);  // checked when it arrived
    uint8_t* data = body.data() + 8 + 8 * size_t{v.count};
    for (uint32_t i = 0; i < v.count; ++i) {
      uint8_t* page = data + size_t{i} * ps;
      writes.push_back({v.pfn(i), page});
      if (staged_built) staged[v.pfn(i)] = page;
    }
  }

  // A page staged in this epoch (a delta's or a speculative copy's target).
  uint8_t* NewEpochPage() {
    if (delta_pages_used == delta_pages.size()) delta_pages.emplace_back(new uint8_t[header.page_size]);
    return delta_pages[delta_pages_used++].get();
  }

  void StageSpec(const SpecPageDataView& v) {
    if (v.epoch != spec_epoch) spec.clear();
    spec_epoch = v.epoch;
    const size_t ps = header.page_size;
    for (uint32_t i = 0; i < v.count; ++i) {
      auto& slot = spec[v.pfn(i)];
      if (!slot) slot.reset(new uint8_t[ps]);
      std::memcpy(slot.get(), v.data + i * ps, ps);
    }
  }

  // The named speculative copies become the frames' current copies [S2].
  Status ApplySpec(const SpecApplyView& a, uint64_t epoch, uint64_t record_offset) {
    if (!staged_built) {
      for (const PageWrite& w : writes) staged[w.pfn] = const_cast<uint8_t*>(w.data);
      staged_built = true;
    }
    for (uint32_t i = 0; i < a.count; ++i) {
      uint64_t pfn = a.pfn(i);
      auto it = spec_epoch == epoch ? spec.find(pfn) : spec.end();
      if (it == spec.end())
        return Status(Errc::kProtocol, "[S2] SPEC_APPLY: pfn " + std::to_string(pfn) +
                                           " has no speculative copy staged for epoch " +
                                           std::to_string(epoch) + " at offset " +
                                           std::to_string(record_offset));
      uint8_t* page = NewEpochPage();
      std::memcpy(page, it->second.get(), header.page_size);
      staged[pfn] = page;
      writes.push_back({pfn, page});
    }
    spec_applied += a.count;
    return Status::OK();
  }

  // Checks each entry's base against the frame's current copy [D4] and
  // applies it to the epoch's copy of the frame. The replica is untouched.
  Status StageDelta(const PageDeltaView& d, uint64_t record_offset) {
    if (!staged_built) {
      for (const PageWrite& w : writes) staged[w.pfn] = const_cast<uint8_t*>(w.data);
      staged_built = true;
    }
    PageDeltaEntry e;
    size_t pos = 8;
    for (uint32_t i = 0; i < d.count; ++i) {
      pos = d.Entry(pos, &e);
      uint8_t*& page = staged[e.pfn];
      if (!page) {
        page = NewEpochPage();
        Status s = replica->ReadFrame(e.pfn, page);
        if (!s.ok()) return s.Annotate("reading the base of pfn " + std::to_string(e.pfn));
      }
      uint64_t have = PageContentHash(page);
      if (have != e.base) {
        char buf[160];
        std::snprintf(buf, sizeof buf,
                      "[D4] PAGE_DELTA: entry %u (pfn %llu): the backup's copy hashes to "
                      "%016llx, the delta's base is %016llx, at offset %llu",
                      i, static_cast<unsigned long long>(e.pfn), static_cast<unsigned long long>(have),
                      static_cast<unsigned long long>(e.base),
                      static_cast<unsigned long long>(record_offset));
        return Status(Errc::kCorruption, buf);
      }
      // Checked whole before the first byte changes (D3 passed already).
      FTSYNC_RETURN_IF_ERROR(ApplyPageDelta(e.encoding, std::span<uint8_t>(page, kPageDeltaPageSize)));
      writes.push_back({e.pfn, page});
    }
    delta_entries += d.count;
    return Status::OK();
  }

  Status Commit(uint64_t epoch) {
    uint64_t t0 = MonotonicUs();
    uint64_t pages = 0;
    Status s;
    if (epoch == 0) {
      s = replica->CommitFull(0, state);
      if (!s.ok()) replica->AbortFull();
    } else {
      pages = writes.size();
      s = replica->ApplyEpoch(header.session, epoch, writes, state);
    }
    uint64_t deltas = delta_entries;
    uint64_t spec_used = spec_applied;
    RecycleBodies();
    spec.clear();  // copies this epoch did not name are dropped
    state.clear();
    if (!s.ok()) return s.Annotate("applying epoch " + std::to_string(epoch));
    {
      std::lock_guard<std::mutex> lock(stats_mu);
      stats.has_complete_epoch = true;
      stats.last_complete_epoch = epoch;
      stats.epochs_applied++;
      stats.pages_applied += pages;
      stats.delta_pages_applied += deltas;
      stats.speculative_pages_applied += spec_used;
      stats.last_apply_us = MonotonicUs() - t0;
    }
    std::lock_guard<std::mutex> lock(back_mu);
    return writer.Ack(epoch);
  }
};

Receiver::Receiver(ReplicaImage* replica, ByteSource* in, ByteSink* back, ReceiverOptions options)
    : impl_(std::make_unique<Impl>(replica, in, back, options)) {}
Receiver::~Receiver() = default;

Status Receiver::Handshake() {
  Impl& m = *impl_;
  Result<StreamHeader> h = m.reader.ReadHeader();
  if (!h.ok()) {
    if (h.status().IsCorruption()) {
      // Answer in a form the peer can parse, so it learns why.
      StreamHeader back;
      back.back_channel = true;
      back.frame_count = 1;
      back.session = 1;
      std::lock_guard<std::mutex> lock(m.back_mu);
      (void)m.writer.WriteHeader(back);
      (void)m.writer.Nack(kNoEpoch, h.status().code() == Errc::kVersion ? kNackVersion : kNackCorruption,
                          h.status().ToString());
    }
    return m.Fail(h.status());
  }
  m.header = *h;
  m.validator = std::make_unique<ForwardValidator>(m.header);
  StreamHeader back = m.header;
  back.back_channel = true;
  {
    std::lock_guard<std::mutex> lock(m.back_mu);
    Status s = m.writer.WriteHeader(back);
    if (!s.ok()) return m.Fail(s);
    m.back_header_written = true;
  }
  m.handshaken = true;
  m.last_activity_ns = MonotonicNs();
  return Status::OK();
}

Result<bool> Receiver::Step() {
  Impl& m = *impl_;
  if (!m.sticky.ok()) return m.sticky;
  if (!m.handshaken) return Status(Errc::kFailedPrecondition, "Step() before Handshake()");
  Result<RecordView> r = m.reader.Next();
  if (!r.ok()) {
    Status s = r.status();
    if (s.code() == Errc::kPeerGone) {
      std::string where = m.validator->in_epoch()
                              ? "inside epoch " + std::to_string(m.validator->open_epoch()) +
                                    " (discarded)"
                              : "between epochs without END";
      std::string cut = s.context().find("[R6]") == 0 ? " (" + s.context() + ")" : "";
      return m.Fail(Status(Errc::kPeerGone, "[O10] primary's stream ended " + where + cut));
    }
    if (s.IsCorruption()) return m.Reject(s, m.validator->in_epoch() ? m.validator->open_epoch() : kNoEpoch);
    return m.Fail(s);
  }
  m.last_activity_ns = MonotonicNs();
  {
    std::lock_guard<std::mutex> lock(m.stats_mu);
    m.stats.bytes_received = m.reader.bytes_read();
  }
  Result<ForwardEvent> ev = m.validator->Feed(*r);
  if (!ev.ok()) return m.Reject(ev.status(), m.validator->open_epoch());
  switch (ev->kind) {
    case ForwardEvent::kBegin:
      if (ev->epoch == 0) {
        Status s = m.replica->BeginFull(m.header.session, m.header.page_size, m.header.frame_count);
        if (!s.ok()) return m.Reject(s, 0);
      }
      break;
    case ForwardEvent::kPages:
      if (ev->epoch == 0) {
        // Epoch 0 goes straight into the new generation's image.
        m.writes.clear();
        for (uint32_t i = 0; i < ev->pages.count; ++i)
          m.writes.push_back({ev->pages.pfn(i), ev->pages.data + size_t{i} * m.header.page_size});
        Status s = m.replica->WriteFullPages(m.writes);
        if (!s.ok()) return m.Reject(s, 0);
      } else {
        // Keep the reader's buffer itself; hand it a recycled one.
        m.StagePageData();
      }
      break;
    case ForwardEvent::kSpec:
      m.StageSpec(ev->spec);
      break;
    case ForwardEvent::kSpecApply: {
      Status s = m.ApplySpec(ev->spec_apply, ev->epoch, r->offset);
      if (!s.ok()) return m.Reject(s, ev->epoch);
      break;
    }
    case ForwardEvent::kDelta: {
      Status s = m.StageDelta(ev->delta, r->offset);
      if (!s.ok()) return m.Reject(s, ev->epoch);
      break;
    }
    case ForwardEvent::kState:
      m.state.assign(ev->state.begin(), ev->state.end());
      break;
    case ForwardEvent::kCommit: {
      Status s = m.Commit(ev->epoch);
      if (!s.ok()) {
        if (s.code() == Errc::kPeerGone) return m.Fail(s);
        return m.Reject(s, ev->epoch);
      }
      break;
    }
    case ForwardEvent::kHeartbeat: {
      std::lock_guard<std::mutex> lock(m.stats_mu);
      m.stats.heartbeats_received++;
      break;
    }
    case ForwardEvent::kEnd: {
      std::lock_guard<std::mutex> lock(m.back_mu);
      (void)m.writer.End();
      m.back_ended = true;
      return false;
    }
  }
  return true;
}

Status Receiver::Run() {
  for (;;) {
    Result<bool> r = Step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::OK();
  }
}

Status Receiver::SendHeartbeat(uint64_t sender_time_ns) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.back_mu);
  if (!m.back_header_written || m.back_ended) return Status(Errc::kFailedPrecondition, "no session");
  return m.writer.Heartbeat(++m.heartbeats_sent, sender_time_ns);
}

std::optional<uint64_t> Receiver::last_complete_epoch() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  if (!impl_->stats.has_complete_epoch) return std::nullopt;
  return impl_->stats.last_complete_epoch;
}

ReceiverStats Receiver::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  return impl_->stats;
}

uint64_t Receiver::last_activity_ns() const { return impl_->last_activity_ns; }

}  // namespace ftsync
