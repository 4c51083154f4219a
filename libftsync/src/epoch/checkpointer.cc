#include "ftsync/checkpointer.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <random>

#include "diff/page_delta.h"
#include "epoch/delta_emitter.h"
#include "spec/speculation_policy.h"
#include "diff/shadow_store.h"
#include "stream/compression.h"
#include "stream/record_reader.h"
#include "stream/record_writer.h"
#include "stream/records.h"
#include "util/clock.h"

namespace ftsync {
using namespace internal;

namespace {

// The buffer dirty frames are copied into while the guest is paused. It
// never shrinks, and grows without copying or zero-filling its old contents
// (they are dead by then). Reserve() is called after each epoch, with the
// guest running, and touches the new memory so that the next pause does not
// pay page faults for it.
class StagingArea {
 public:
  uint8_t* data() { return buf_.get(); }
  void EnsureCapacity(size_t bytes) {
    if (bytes <= cap_) return;
    buf_.reset(new uint8_t[bytes]);  // uninitialised: no zero-fill
    cap_ = bytes;
  }
  void Reserve(size_t bytes) {
    if (bytes <= cap_) return;
    EnsureCapacity(bytes);
    for (size_t off = 0; off < bytes; off += 4096) buf_[off] = 0;  // fault in now
  }

 private:
  std::unique_ptr<uint8_t[]> buf_;
  size_t cap_ = 0;
};

// An epoch on the stream whose ACK has not arrived. Its frames are kept so
// their dirty bits can be put back if the session dies before the ACK.
struct InFlight {
  uint64_t epoch;
  std::vector<uint64_t> pfns;
  uint64_t emitted_us;
};

}  // namespace

const char* DeltaModeName(DeltaMode m) {
  switch (m) {
    case DeltaMode::kOff: return "off";
    case DeltaMode::kBlocks: return "blocks";
    case DeltaMode::kRuns: return "runs";
    case DeltaMode::kAuto: return "auto";
    case DeltaMode::kBlockHash: return "hash";
  }
  return "unknown";
}

const char* CompressionName(Compression c) {
  switch (c) {
    case Compression::kNone: return "none";
    case Compression::kZlib: return "zlib";
    case Compression::kZstd: return "zstd";
  }
  return "unknown";
}

const char* SpeculationName(Speculation s) {
  switch (s) {
    case Speculation::kOff: return "off";
    case Speculation::kEager: return "eager";
    case Speculation::kHistory: return "history";
    case Speculation::kFill: return "fill";
  }
  return "unknown";
}

Result<Speculation> ParseSpeculation(std::string_view name) {
  for (Speculation s : {Speculation::kOff, Speculation::kEager, Speculation::kHistory, Speculation::kFill})
    if (name == SpeculationName(s)) return s;
  return Status(Errc::kInvalidArgument,
                "unknown speculation policy '" + std::string(name) + "' (off, eager, history, fill)");
}

Result<DeltaMode> ParseDeltaMode(std::string_view name) {
  for (DeltaMode m : {DeltaMode::kOff, DeltaMode::kBlocks, DeltaMode::kRuns, DeltaMode::kAuto,
                      DeltaMode::kBlockHash})
    if (name == DeltaModeName(m)) return m;
  return Status(Errc::kInvalidArgument,
                "unknown delta mode '" + std::string(name) + "' (off, blocks, runs, auto, hash)");
}

Result<Compression> ParseCompression(std::string_view name) {
  for (Compression c : {Compression::kNone, Compression::kZlib, Compression::kZstd})
    if (name == CompressionName(c)) return c;
  return Status(Errc::kInvalidArgument,
                "unknown compression '" + std::string(name) + "' (none, zlib, zstd)");
}

struct Checkpointer::Impl {
  Domain* domain;
  ByteSink* out;
  ByteSource* back;
  CheckpointerOptions opts;
  std::mutex write_mu;  // one record at a time: heartbeats may come from another thread
  RecordWriter writer;
  RecordReader back_reader;
  std::vector<CheckpointDevice*> devices;
  bool devices_set_up = false;
  bool torn_down = false;
  bool started = false;
  bool log_enabled = false;
  bool finished = false;
  StreamHeader header;
  uint32_t page_size = 0;
  uint64_t heartbeat_seq = 0;
  // Guarded by write_mu: heartbeats only between the header and END, and
  // nothing after a failed write.
  bool header_written = false;
  bool end_written = false;
  bool stream_broken = false;

  uint64_t next_epoch = 0;
  int64_t last_acked = -1;
  std::deque<InFlight> in_flight;
  Status sticky;

  // Staging area: the dirty frames of the epoch being taken, copied while
  // the guest is paused.
  StagingArea staging;
  std::vector<uint64_t> pfns;
  std::vector<int> errors;
  DirtyBitmap bitmap;
  std::vector<uint8_t> state;

  // Deltas: what the backup holds of recently sent pages (null: kOff), and
  // the buffers of one epoch's encoding.
  std::unique_ptr<ShadowStore> shadow;
  std::unique_ptr<DeltaEmitter> emitter;

  // Speculation: the policy (null: off), this epoch's ticks, and the frames
  // sent ahead for the next epoch (their dirty bits were cleared by the
  // re-arm: they are put back if the session fails before an ACK).
  std::unique_ptr<SpeculationPolicy> policy;
  // A peek-only domain (PeekDirty without RearmDirty): sent pages stay
  // dirty, so the epoch's end sends each as a delta against its
  // speculative copy, and nothing at all when it is unchanged.
  bool spec_peek_only = false;
  std::atomic<bool> spec_active{false};  // policy set: read by speculating() from any thread
  std::vector<uint64_t> spec_unchanged;
  DirtyBitmap spec_rewritten;
  uint32_t spec_tick = 0;
  DirtyBitmap peek;
  DirtyBitmap spec_bits;
  std::vector<uint64_t> spec_pfns;
  std::vector<uint64_t> spec_list;
  std::vector<uint8_t> spec_buf;
  uint64_t spec_sends = 0;
  uint64_t spec_bytes = 0;

  mutable std::mutex stats_mu;
  CheckpointerStats stats;
  std::deque<EpochStats> history;

  Impl(Domain* d, ByteSink* o, ByteSource* b, CheckpointerOptions op)
      : domain(d), out(o), back(b), opts(op), writer(o), back_reader(b, true) {
    if (!opts.logger) opts.logger = NullLogger();
  }

  void Log(LogLevel level, const std::string& msg) { opts.logger->Log(level, msg); }

  Status Fail(Status s) {
    if (sticky.ok()) {
      sticky = s;
      // The backup may hold none of what the store recorded since its last
      // ACK: no delta may ever be computed against it again.
      if (shadow) shadow->Clear();
      Log(LogLevel::kError, "checkpointer: session failed: " + s.ToString());
      // Nothing unacknowledged may be lost: the next session resends it.
      std::vector<uint64_t> all;
      for (const InFlight& f : in_flight) all.insert(all.end(), f.pfns.begin(), f.pfns.end());
      all.insert(all.end(), spec_pfns.begin(), spec_pfns.end());
      spec_pfns.clear();
      in_flight.clear();
      PutBack(all);
    }
    return sticky;
  }

  void PutBack(std::span<const uint64_t> list) {
    if (list.empty() || !log_enabled) return;
    Status s = domain->Redirty(list);
    if (!s.ok()) {
      Log(LogLevel::kError, "checkpointer: could not put back " + std::to_string(list.size()) +
                                " dirty frames: " + s.ToString());
      return;
    }
    std::lock_guard<std::mutex> lock(stats_mu);
    stats.redirtied_pages += list.size();
  }

  // Copies frames `list` into `dst`; unreadable frames become zeros.
  Status ReadInto(std::span<const uint64_t> list, uint8_t* dst, uint64_t* unreadable) {
    errors.assign(list.size(), 0);
    FTSYNC_RETURN_IF_ERROR(domain->ReadFrames(list, dst, errors));
    for (size_t i = 0; i < list.size(); ++i) {
      if (errors[i] != 0) {
        std::memset(dst + i * page_size, 0, page_size);
        ++*unreadable;
      }
    }
    return Status::OK();
  }

  Status WriteLocked(const std::function<Status()>& f) {
    std::lock_guard<std::mutex> lock(write_mu);
    if (stream_broken) return Status(Errc::kPeerGone, "the stream is broken");
    Status s = f();
    if (!s.ok()) stream_broken = true;  // a partial record: nothing may follow
    return s;
  }

  // Emits `list`, whose contents are at `data`, as PAGE_DATA records.
  Status EmitPages(std::span<const uint64_t> list, const uint8_t* data) {
    size_t batch = std::max<size_t>(1, std::min<size_t>(opts.batch_pages, kPageDataMaxBytes / page_size));
    for (size_t i = 0; i < list.size(); i += batch) {
      size_t n = std::min(batch, list.size() - i);
      FTSYNC_RETURN_IF_ERROR(WriteLocked(
          [&] { return writer.PageData(list.subspan(i, n), data + i * page_size, page_size); }));
    }
    return Status::OK();
  }

  // Creates the shadow store and sets the codec from the options.
  Status SetUpEncoding() {
    if (opts.delta != DeltaMode::kOff) {
      if (page_size != kPageDeltaPageSize) {
        Log(LogLevel::kWarning, "checkpointer: page size " + std::to_string(page_size) +
                                    " is not 4096: sending whole pages (delta " +
                                    DeltaModeName(opts.delta) + " needs 4 KiB pages)");
      } else {
        ShadowOptions so;
        so.mode = opts.delta == DeltaMode::kBlockHash ? ShadowMode::kBlockHash : ShadowMode::kCopy;
        so.memory_budget = opts.shadow_budget_bytes;
        switch (opts.delta_block_size) {
          case 64: so.delta.block_size = BlockSize::k64; break;
          case 128: so.delta.block_size = BlockSize::k128; break;
          case 256: so.delta.block_size = BlockSize::k256; break;
          default:
            return Status(Errc::kInvalidArgument, "delta block size " +
                                                      std::to_string(opts.delta_block_size) +
                                                      " is not 64, 128 or 256");
        }
        so.delta.format = opts.delta == DeltaMode::kRuns   ? DeltaFormat::kRuns
                          : opts.delta == DeltaMode::kAuto ? DeltaFormat::kAuto
                                                           : DeltaFormat::kBlocks;
        Result<std::unique_ptr<ShadowStore>> st = ShadowStore::Create(so);
        if (!st.ok()) return st.status().Annotate("shadow store");
        shadow = std::move(st).value();
      }
    }
    Codec codec = opts.compression == Compression::kZlib   ? Codec::kZlib
                  : opts.compression == Compression::kZstd ? Codec::kZstd
                                                           : Codec::kNone;
    return writer.SetCompression(codec, opts.compression_level).Annotate("compression");
  }

  // Emits the staged frames of epoch `epoch` (> 0): as deltas where the
  // shadow store holds the page's previous version, whole otherwise.
  // On a peek-only domain, the frames sent ahead that are unchanged since
  // their speculative copy are not sent again (spec_unchanged lists them).
  Status EmitDeltas(uint64_t epoch, EpochStats* es) {
    if (!emitter) emitter = std::make_unique<DeltaEmitter>(opts.batch_pages);
    DeltaEmitStats ds;
    spec_unchanged.clear();
    const bool skip = spec_peek_only && !spec_pfns.empty();
    Status s = emitter->Emit(
        shadow.get(), epoch, pfns, staging.data(),
        [&](const std::function<Status(RecordWriter&)>& f) { return WriteLocked([&] { return f(writer); }); },
        &ds, skip ? &spec_bits : nullptr, skip ? &spec_unchanged : nullptr);
    es->delta_pages = ds.delta_pages;
    es->speculative_unchanged = ds.same_skipped;
    es->encode_us = ds.encode_ns / 1000;
    return s;
  }

  // Creates the speculation policy when asked for and possible.
  Status SetUpSpeculation() {
    if (opts.speculation == Speculation::kOff) return Status::OK();
    if (!domain->SupportsPeekDirty()) {
      Log(LogLevel::kWarning, "checkpointer: " + domain->Name() +
                                  " cannot peek at its dirty log: no speculation");
      return Status::OK();
    }
    spec_peek_only = !domain->SupportsRearmDirty();
    if (spec_peek_only && (!shadow || shadow->options().mode != ShadowMode::kCopy)) {
      // Every page sent ahead is dirty again at the end; only an exact
      // copy of what was sent lets the end skip the unchanged ones.
      Log(LogLevel::kWarning, "checkpointer: " + domain->Name() +
                                  " can peek at but not re-arm its dirty log, and speculation there "
                                  "needs deltas against a page copy (delta blocks, runs or auto on "
                                  "4 KiB pages; now " +
                                  std::string(shadow ? DeltaModeName(opts.delta) : "off") +
                                  "): no speculation");
      spec_peek_only = false;
      return Status::OK();
    }
    SpeculationOptions so = DefaultSpeculationOptions(
        opts.speculation == Speculation::kEager     ? SpeculationPolicyKind::kEager
        : opts.speculation == Speculation::kHistory ? SpeculationPolicyKind::kHistory
                                                    : SpeculationPolicyKind::kFill);
    so.ticks_per_epoch = opts.speculation_ticks;
    if (opts.speculation != Speculation::kEager) so.budget_ratio = opts.speculation_budget;
    so.page_size = page_size;
    so.can_rearm = !spec_peek_only;
    Result<std::unique_ptr<SpeculationPolicy>> p = SpeculationPolicy::Create(header.frame_count, so);
    if (!p.ok()) return p.status().Annotate("speculation policy");
    policy = std::move(p).value();
    spec_active = true;
    spec_bits.Resize(header.frame_count);
    if (spec_peek_only) {
      spec_rewritten.Resize(header.frame_count);
      Log(LogLevel::kInfo, "checkpointer: " + domain->Name() +
                               " can peek at but not re-arm its dirty log: pages sent ahead are "
                               "dirty again at the epoch's end and go as deltas against their "
                               "speculative copies (none when unchanged)");
    }
    return policy->BeginEpoch();
  }

  Status SpeculateTick() {
    FTSYNC_RETURN_IF_ERROR(domain->PeekDirty(&peek).Annotate("peek at the dirty log"));
    Result<std::span<const uint64_t>> pick = policy->Tick(++spec_tick, peek);
    if (!pick.ok()) return pick.status();
    spec_list.assign(pick->begin(), pick->end());
    if (spec_list.empty()) return Status::OK();
    // Re-arm, then read (hypervisor.h): a write after the re-arm is seen.
    // A peek-only domain keeps the frames dirty: the epoch's end sees them.
    Status s;
    if (!spec_peek_only) s = domain->RearmDirty(spec_list);
    if (!s.ok()) {
      (void)policy->Unsent(spec_list);
      return s.Annotate("re-arm speculative frames");
    }
    spec_buf.resize(spec_list.size() * page_size);
    errors.assign(spec_list.size(), 0);
    s = domain->ReadFrames(spec_list, spec_buf.data(), errors);
    bool unreadable = false;
    for (int e : errors) unreadable |= e != 0;
    if (!s.ok() || unreadable) {
      // Not sent after all: their bits were cleared by the re-arm.
      if (!spec_peek_only) PutBack(spec_list);
      (void)policy->Unsent(spec_list);
      return s.ok() ? Status::OK() : s.Annotate("read speculative frames");
    }
    for (uint64_t p : spec_list)
      if (!spec_bits.Test(p)) {
        spec_bits.Set(p);
        spec_pfns.push_back(p);
      }
    uint64_t before = writer.bytes_written();
    const size_t batch = std::max<size_t>(1, std::min<size_t>(opts.batch_pages, kPageDataMaxBytes / page_size));
    std::span<const uint64_t> all(spec_list);
    for (size_t i = 0; i < all.size(); i += batch) {
      size_t n = std::min(batch, all.size() - i);
      s = WriteLocked([&] {
        return writer.SpecPageData(next_epoch, all.subspan(i, n), spec_buf.data() + i * page_size, page_size);
      });
      if (!s.ok()) return Fail(s.Annotate("sending speculative pages for epoch " + std::to_string(next_epoch)));
    }
    // The backup will hold these copies once the epoch names them.
    if (shadow)
      for (size_t i = 0; i < spec_list.size(); ++i)
        shadow->Record(spec_list[i], spec_buf.data() + i * page_size, next_epoch);
    spec_sends += spec_list.size();
    spec_bytes += writer.bytes_written() - before;
    return Status::OK();
  }

  // Names the frames sent ahead for `epoch` (inside it, first).
  Status EmitSpecApply() {
    std::sort(spec_pfns.begin(), spec_pfns.end());
    std::span<const uint64_t> all(spec_pfns);
    for (size_t i = 0; i < all.size(); i += kSpecApplyMaxCount) {
      size_t n = std::min<size_t>(kSpecApplyMaxCount, all.size() - i);
      FTSYNC_RETURN_IF_ERROR(WriteLocked([&] { return writer.SpecApply(all.subspan(i, n)); }));
    }
    return Status::OK();
  }

  // After epoch `es` went out: the policy learns, the next epoch begins.
  void EndSpeculationEpoch(EpochStats* es) {
    es->speculative_sends = spec_sends;
    es->speculative_bytes = spec_bytes;
    spec_sends = spec_bytes = 0;
    const DirtyBitmap* rewritten = nullptr;
    if (spec_peek_only && policy) {
      // The sent pages whose end-of-epoch version differs from their copy.
      spec_rewritten.ClearAll();
      for (uint64_t p : spec_pfns)
        if (bitmap.Test(p)) spec_rewritten.Set(p);
      for (uint64_t p : spec_unchanged) spec_rewritten.Clear(p);
      rewritten = &spec_rewritten;
    }
    spec_unchanged.clear();
    for (uint64_t p : spec_pfns) spec_bits.Clear(p);
    spec_pfns.clear();
    spec_tick = 0;
    if (!policy) return;
    Status s = policy->EndEpoch(bitmap, rewritten);
    if (s.ok()) s = policy->BeginEpoch();
    if (!s.ok()) Log(LogLevel::kWarning, "checkpointer: speculation policy: " + s.ToString());
  }

  // Records a sent epoch's stats, then, with the guest running, makes room
  // for an epoch twice this size, so the next pause finds the staging area
  // allocated and touched.
  void Record(const EpochStats& es) {
    RecordStats(es);
    staging.Reserve(std::min<uint64_t>(2 * pfns.size(), header.frame_count) * page_size);
  }

  void RecordStats(const EpochStats& es) {
    std::lock_guard<std::mutex> lock(stats_mu);
    stats.last = es;
    stats.epochs_sent++;
    stats.total_dirty_pages += es.dirty_pages;
    stats.total_bytes_wire += es.bytes_wire;
    stats.in_flight = in_flight.size();
    history.push_back(es);
    while (history.size() > opts.stats_history) history.pop_front();
  }

  // The paused part of an epoch. On success the guest runs again and
  // `pfns`, `staging` and `state` hold the epoch. `carry` holds dirty frames
  // already harvested while the guest ran (epoch 0's last pre-copy round).
  // `inside`, when given, runs just before the guest resumes: the baseline
  // mode that writes the epoch to the stream while the guest is paused.
  Status PauseAndStage(uint64_t epoch, const DirtyBitmap* carry, EpochStats* es,
                       const std::function<Status()>* inside = nullptr) {
    uint64_t t0 = MonotonicUs();
    FTSYNC_RETURN_IF_ERROR(domain->Suspend().Annotate("suspend " + domain->Name()));
    uint64_t t_suspended = MonotonicUs();
    Status s;
    for (CheckpointDevice* dev : devices) {
      s = dev->Postsuspend(epoch);
      if (!s.ok()) {
        s = s.Annotate("device " + dev->Name() + " postsuspend");
        break;
      }
    }
    uint64_t t_harvest = MonotonicUs();
    if (s.ok()) s = domain->FetchAndClearDirty(&bitmap).Annotate("harvest dirty log");
    uint64_t t1 = MonotonicUs();
    pfns.clear();
    if (s.ok()) {
      if (carry) bitmap.Merge(*carry);
      bitmap.AppendSetBits(&pfns);
      // Grows here only on a spike; see StagingArea.
      staging.EnsureCapacity(pfns.size() * page_size);
      es->unreadable_pages = 0;
      s = ReadInto(pfns, staging.data(), &es->unreadable_pages).Annotate("copy dirty frames");
    }
    uint64_t t2 = MonotonicUs();
    if (s.ok()) {
      Result<std::vector<uint8_t>> st = domain->SaveState();
      if (st.ok()) state = std::move(st).value();
      else s = st.status().Annotate("save state");
    }
    uint64_t t3 = MonotonicUs();
    if (s.ok()) {
      for (CheckpointDevice* dev : devices) {
        s = dev->Preresume(epoch);
        if (!s.ok()) {
          s = s.Annotate("device " + dev->Name() + " preresume");
          break;
        }
      }
    }
    uint64_t t_emit = MonotonicUs();
    if (s.ok() && inside) s = (*inside)();
    uint64_t t_resume = MonotonicUs();
    Status r = domain->Resume().Annotate("resume " + domain->Name());
    uint64_t t4 = MonotonicUs();
    if (!s.ok()) {
      PutBack(pfns);
      pfns.clear();
      if (!r.ok()) return Fail(r);  // a guest left paused ends the session
      return s;
    }
    if (!r.ok()) {
      PutBack(pfns);
      return Fail(r);
    }
    es->epoch = epoch;
    es->dirty_pages = pfns.size();
    es->bytes_staged = pfns.size() * page_size;
    es->state_bytes = state.size();
    es->suspend_us = t_suspended - t0;
    es->harvest_us = t1 - t_harvest;
    es->copy_us = t2 - t1;
    es->state_save_us = t3 - t2;
    es->resume_us = t4 - t_resume;
    es->emit_paused_us = t_resume - t_emit;
    es->paused_us = t4 - t0;
    return Status::OK();
  }

  // Writes the rest of epoch `epoch` (its staged frames, state, commit).
  Status EmitStaged(uint64_t epoch, uint64_t pages_before, EpochStats* es, uint64_t wire_before) {
    uint64_t t0 = MonotonicUs();
    uint64_t cin = writer.compress_in_bytes(), cout = writer.compress_out_bytes();
    uint64_t cns = writer.compress_ns();
    Status s;
    uint64_t named = epoch > 0 ? spec_pfns.size() : 0;
    if (named) s = EmitSpecApply();
    if (s.ok()) s = epoch > 0 && shadow ? EmitDeltas(epoch, es) : EmitPages(pfns, staging.data());
    if (s.ok()) s = WriteLocked([&] { return writer.DeviceState(state); });
    if (s.ok())
      s = WriteLocked([&] {
        return writer.EpochCommit(epoch, pages_before + named + pfns.size() - spec_unchanged.size());
      });
    if (!s.ok()) {
      PutBack(pfns);
      return Fail(s.Annotate("sending epoch " + std::to_string(epoch)));
    }
    uint64_t now = MonotonicUs();
    es->emit_us = now - t0;
    es->bytes_wire = writer.bytes_written() - wire_before;
    es->bytes_after_delta = writer.compress_in_bytes() - cin;
    es->bytes_after_compression = writer.compress_out_bytes() - cout;
    es->compress_us = (writer.compress_ns() - cns) / 1000;
    in_flight.push_back(InFlight{epoch, pfns, now});
    if (named) in_flight.back().pfns.insert(in_flight.back().pfns.end(), spec_pfns.begin(), spec_pfns.end());
    es->speculative_pages = named;
    if (epoch > 0) EndSpeculationEpoch(es);
    next_epoch = epoch + 1;
    return Status::OK();
  }

  Status WaitForRoom() {
    while (in_flight.size() >= std::max<uint32_t>(1, opts.max_in_flight)) {
      FTSYNC_RETURN_IF_ERROR(ProcessOne(-1));
    }
    return Status::OK();
  }

  // Reads and handles one back-channel record if one arrives in timeout_ms.
  // Returns OK with nothing done on timeout.
  Status ProcessOne(int timeout_ms) {
    if (!sticky.ok()) return sticky;
    Result<bool> ready = back->WaitReadable(timeout_ms);
    if (!ready.ok()) return Fail(ready.status().Annotate("back channel"));
    if (!*ready) return Status::OK();
    Result<RecordView> r = back_reader.Next();
    if (!r.ok()) {
      if (r.status().code() == Errc::kPeerGone)
        return Fail(Status(Errc::kPeerGone, "backup closed the back channel"));
      return Fail(r.status().Annotate("back channel"));
    }
    switch (r->type) {
      case kAck: {
        Result<AckBody> a = ParseAck(r->body);
        if (!a.ok()) return Fail(a.status());
        return HandleAck(a->epoch);
      }
      case kNack: {
        Result<NackBody> n = ParseNack(r->body);
        if (!n.ok()) return Fail(n.status());
        std::string which = n->epoch == kNoEpoch ? "the stream" : "epoch " + std::to_string(n->epoch);
        return Fail(Status(Errc::kPeerRejected, "backup rejected " + which + ": " + n->message));
      }
      case kHeartbeat: {
        std::lock_guard<std::mutex> lock(stats_mu);
        stats.heartbeats_received++;
        return Status::OK();
      }
      case kEnd:
        return Fail(Status(Errc::kPeerGone, "backup ended the session"));
      default:
        return Fail(Status(Errc::kProtocol, "[B2] unexpected " + RecordTypeName(r->type) +
                                                " on the back channel"));
    }
  }

  Status HandleAck(uint64_t epoch) {
    int64_t newest = static_cast<int64_t>(next_epoch) - 1;
    if (static_cast<int64_t>(epoch) <= last_acked || static_cast<int64_t>(epoch) > newest)
      return Fail(Status(Errc::kProtocol,
                         "[B1] ACK(" + std::to_string(epoch) + ") but last ACK was " +
                             std::to_string(last_acked) + " and newest sent epoch is " +
                             std::to_string(newest)));
    uint64_t now = MonotonicUs();
    while (!in_flight.empty() && in_flight.front().epoch <= epoch) {
      InFlight f = std::move(in_flight.front());
      in_flight.pop_front();
      {
        std::lock_guard<std::mutex> lock(stats_mu);
        stats.epochs_acked++;
        stats.in_flight = in_flight.size();
        int64_t lat = static_cast<int64_t>(now - f.emitted_us);
        for (auto it = history.rbegin(); it != history.rend(); ++it)
          if (it->epoch == f.epoch) {
            it->ack_latency_us = lat;
            break;
          }
        if (stats.last.epoch == f.epoch) stats.last.ack_latency_us = lat;
      }
      // Output of this epoch may now leave.
      for (CheckpointDevice* dev : devices) {
        Status s = dev->Commit(f.epoch);
        if (!s.ok()) return Fail(s.Annotate("device " + dev->Name() + " commit"));
      }
    }
    last_acked = static_cast<int64_t>(epoch);
    return Status::OK();
  }

  void Teardown() {
    if (torn_down) return;
    torn_down = true;
    for (auto it = devices.rbegin(); it != devices.rend(); ++it) (*it)->Teardown();
  }
};

Checkpointer::Checkpointer(Domain* domain, ByteSink* out, ByteSource* back, CheckpointerOptions options)
    : impl_(std::make_unique<Impl>(domain, out, back, options)) {}

Checkpointer::~Checkpointer() {
  Impl& m = *impl_;
  if (m.log_enabled) (void)m.domain->DisableDirtyLog();
  m.Teardown();
}

Status Checkpointer::AddDevice(CheckpointDevice* device) {
  if (impl_->started) return Status(Errc::kFailedPrecondition, "AddDevice after Start");
  impl_->devices.push_back(device);
  return Status::OK();
}

Status Checkpointer::Start() {
  Impl& m = *impl_;
  if (m.started) return Status(Errc::kFailedPrecondition, "Start called twice");
  m.started = true;
  m.page_size = static_cast<uint32_t>(m.domain->PageSize());
  m.header.page_size = m.page_size;
  m.header.frame_count = m.domain->FrameCount();
  m.header.session = m.opts.session;
  while (m.header.session == 0) m.header.session = std::random_device{}() * 0x100000001ull ^ MonotonicNs();
  Status enc = m.SetUpEncoding();
  if (!enc.ok()) return m.Fail(enc);

  for (CheckpointDevice* dev : m.devices) {
    Status s = dev->Setup();
    if (!s.ok()) {
      m.Teardown();
      return m.Fail(s.Annotate("device " + dev->Name() + " setup"));
    }
  }
  m.devices_set_up = true;

  Status s = m.WriteLocked([&] {
    Status w = m.writer.WriteHeader(m.header);
    m.header_written = w.ok();
    return w;
  });
  if (!s.ok()) return m.Fail(s.Annotate("stream header"));
  Result<StreamHeader> bh = m.back_reader.ReadHeader();
  if (!bh.ok()) return m.Fail(bh.status().Annotate("backup's back-channel header"));
  s = CheckEchoedHeader(m.header, *bh);
  if (!s.ok()) return m.Fail(s);

  m.staging.Reserve(std::min<uint64_t>(m.opts.staging_reserve_pages, m.header.frame_count) * m.page_size);
  s = m.domain->EnableDirtyLog();
  if (!s.ok()) return m.Fail(s.Annotate("enable dirty logging on " + m.domain->Name()));
  m.log_enabled = true;

  // Epoch 0: one full pass while the guest runs, then pre-copy rounds, then
  // the paused remainder.
  EpochStats es;
  uint64_t wire_before = m.writer.bytes_written();
  s = m.WriteLocked([&] { return m.writer.EpochBegin(0); });
  if (!s.ok()) return m.Fail(s);
  const uint64_t frames = m.header.frame_count;
  const size_t batch = std::max<size_t>(1, std::min<size_t>(m.opts.batch_pages, kPageDataMaxBytes / m.page_size));
  std::vector<uint64_t> list;
  std::vector<uint8_t> buf(batch * m.page_size);
  uint64_t pages_sent = 0, unreadable = 0;
  for (uint64_t start = 0; start < frames; start += batch) {
    list.clear();
    for (uint64_t p = start; p < std::min<uint64_t>(frames, start + batch); ++p) list.push_back(p);
    s = m.ReadInto(list, buf.data(), &unreadable);
    if (s.ok()) s = m.EmitPages(list, buf.data());
    if (!s.ok()) return m.Fail(s.Annotate("epoch 0 full pass"));
    pages_sent += list.size();
  }
  DirtyBitmap carry(frames);
  for (uint32_t round = 0; round < m.opts.precopy_rounds; ++round) {
    s = m.domain->FetchAndClearDirty(&carry);
    if (!s.ok()) return m.Fail(s.Annotate("pre-copy harvest"));
    list.clear();
    carry.AppendSetBits(&list);
    if (list.size() <= m.opts.precopy_min_pages) break;  // the paused round takes them
    std::vector<uint8_t> round_buf(list.size() * m.page_size);
    s = m.ReadInto(list, round_buf.data(), &unreadable);
    if (s.ok()) s = m.EmitPages(list, round_buf.data());
    if (!s.ok()) return m.Fail(s.Annotate("pre-copy round"));
    pages_sent += list.size();
    carry.ClearAll();
    std::lock_guard<std::mutex> lock(m.stats_mu);
    m.stats.precopy_rounds++;
  }
  s = m.PauseAndStage(0, &carry, &es);
  if (!s.ok()) return m.Fail(s);
  es.unreadable_pages += unreadable;
  s = m.EmitStaged(0, pages_sent, &es, wire_before);
  if (s.ok()) m.Record(es);
  if (s.ok()) {
    s = m.SetUpSpeculation();
    if (!s.ok()) return m.Fail(s);
  }
  return s;
}

Status Checkpointer::Speculate() {
  Impl& m = *impl_;
  if (!m.sticky.ok()) return m.sticky;
  if (!m.started || m.finished) return Status(Errc::kFailedPrecondition, "Speculate outside a session");
  if (!m.policy) return Status::OK();
  return m.SpeculateTick();
}

bool Checkpointer::speculating() const { return impl_->spec_active; }

Status Checkpointer::Checkpoint() {
  Impl& m = *impl_;
  if (!m.sticky.ok()) return m.sticky;
  if (!m.started || m.finished) return Status(Errc::kFailedPrecondition, "Checkpoint outside a session");
  FTSYNC_RETURN_IF_ERROR(m.ProcessOne(0));
  FTSYNC_RETURN_IF_ERROR(m.WaitForRoom());
  uint64_t epoch = m.next_epoch;
  EpochStats es;
  if (m.opts.emit_while_paused) {
    // Baseline: the whole epoch goes onto the stream before the guest runs.
    uint64_t wire_before = m.writer.bytes_written();
    std::function<Status()> emit = [&] {
      Status s = m.WriteLocked([&] { return m.writer.EpochBegin(epoch); });
      if (!s.ok()) return m.Fail(s);
      return m.EmitStaged(epoch, 0, &es, wire_before);
    };
    FTSYNC_RETURN_IF_ERROR(m.PauseAndStage(epoch, nullptr, &es, &emit));
    es.emit_us = es.emit_paused_us;
    m.Record(es);
    return Status::OK();
  }
  FTSYNC_RETURN_IF_ERROR(m.PauseAndStage(epoch, nullptr, &es));
  uint64_t wire_before = m.writer.bytes_written();
  Status s = m.WriteLocked([&] { return m.writer.EpochBegin(epoch); });
  if (!s.ok()) {
    m.PutBack(m.pfns);
    return m.Fail(s);
  }
  s = m.EmitStaged(epoch, 0, &es, wire_before);
  if (s.ok()) m.Record(es);
  return s;
}

Status Checkpointer::PollBackChannel(int timeout_ms) {
  Impl& m = *impl_;
  FTSYNC_RETURN_IF_ERROR(m.ProcessOne(timeout_ms));
  for (;;) {  // then whatever else is already there
    Result<bool> more = m.back->WaitReadable(0);
    if (!more.ok() || !*more) break;
    FTSYNC_RETURN_IF_ERROR(m.ProcessOne(0));
  }
  return Status::OK();
}

Status Checkpointer::WaitForAck(uint64_t epoch) {
  Impl& m = *impl_;
  if (epoch >= m.next_epoch) return Status(Errc::kInvalidArgument, "epoch " + std::to_string(epoch) + " was not sent");
  while (m.last_acked < static_cast<int64_t>(epoch)) FTSYNC_RETURN_IF_ERROR(m.ProcessOne(-1));
  return Status::OK();
}

Status Checkpointer::SendHeartbeat() {
  Impl& m = *impl_;
  // Never wait behind the engine: a record being written is a sign of life
  // already, and a caller that checks liveness must not block here.
  std::unique_lock<std::mutex> lock(m.write_mu, std::try_to_lock);
  if (!lock.owns_lock()) return Status::OK();
  if (!m.header_written || m.end_written) return Status(Errc::kFailedPrecondition, "no session");
  if (m.stream_broken) return Status(Errc::kPeerGone, "the stream is broken");
  Status s = m.writer.Heartbeat(++m.heartbeat_seq, MonotonicNs());
  if (!s.ok()) m.stream_broken = true;
  return s;
}

Status Checkpointer::Finish() {
  Impl& m = *impl_;
  if (!m.sticky.ok()) return m.sticky;
  if (m.next_epoch > 0) FTSYNC_RETURN_IF_ERROR(WaitForAck(m.next_epoch - 1));
  Status s = m.WriteLocked([&] {
    Status w = m.writer.End();
    m.end_written = true;
    return w;
  });
  if (!s.ok()) return m.Fail(s);
  m.finished = true;
  if (m.log_enabled) {
    s = m.domain->DisableDirtyLog();
    m.log_enabled = false;
  }
  m.Teardown();
  return s;
}

void Checkpointer::set_emit_while_paused(bool on) { impl_->opts.emit_while_paused = on; }
Status Checkpointer::status() const { return impl_->sticky; }
uint64_t Checkpointer::next_epoch() const { return impl_->next_epoch; }
int64_t Checkpointer::last_acked_epoch() const { return impl_->last_acked; }
uint64_t Checkpointer::session() const { return impl_->header.session; }

CheckpointerStats Checkpointer::stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  return impl_->stats;
}

std::vector<EpochStats> Checkpointer::stats_history() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  return {impl_->history.begin(), impl_->history.end()};
}

}  // namespace ftsync
