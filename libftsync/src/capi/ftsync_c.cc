// The C API (ftsync.h) over the C++ engines.
#include "ftsync/ftsync.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "ftsync/checkpointer.h"
#include "ftsync/io.h"
#include "ftsync/receiver.h"
#include "ftsync/replica.h"

namespace {
using namespace ftsync;

int Code(const Status& s) { return -static_cast<int>(s.code()); }

Status FromCallback(int rc, const char* what) {
  if (rc == 0) return Status::OK();
  return Status::FromErrno(rc, std::string("domain callback ") + what);
}

// A Domain whose operations are the caller's callbacks.
class CallbackDomain : public Domain {
 public:
  CallbackDomain(const ftsync_domain_ops& ops, void* ctx) : ops_(ops), ctx_(ctx) {}
  std::string Name() const override { return "c-api-domain"; }
  size_t PageSize() const override { return ops_.page_size; }
  uint64_t FrameCount() const override { return ops_.frame_count; }
  Status EnableDirtyLog() override { return FromCallback(ops_.enable_dirty_log(ctx_), "enable_dirty_log"); }
  Status DisableDirtyLog() override { return FromCallback(ops_.disable_dirty_log(ctx_), "disable_dirty_log"); }
  Status FetchAndClearDirty(DirtyBitmap* out) override {
    out->Resize(ops_.frame_count);
    return FromCallback(ops_.fetch_and_clear_dirty(ctx_, out->words(), out->word_count()),
                        "fetch_and_clear_dirty");
  }
  Status Redirty(std::span<const uint64_t> pfns) override {
    return FromCallback(ops_.redirty(ctx_, pfns.data(), pfns.size()), "redirty");
  }
  Status Suspend() override { return FromCallback(ops_.suspend(ctx_), "suspend"); }
  Status Resume() override { return FromCallback(ops_.resume(ctx_), "resume"); }
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) override {
    return FromCallback(ops_.read_frames(ctx_, pfns.data(), pfns.size(), dst, errors.data()),
                        "read_frames");
  }
  Result<std::vector<uint8_t>> SaveState() override {
    uint8_t* blob = nullptr;
    size_t len = 0;
    Status s = FromCallback(ops_.save_state(ctx_, &blob, &len), "save_state");
    if (!s.ok()) return s;
    std::vector<uint8_t> v(blob, blob + len);
    std::free(blob);
    return v;
  }
  Status RestoreState(std::span<const uint8_t> state) override {
    return FromCallback(ops_.restore_state(ctx_, state.data(), state.size()), "restore_state");
  }

 private:
  ftsync_domain_ops ops_;
  void* ctx_;
};

class CallbackDevice : public CheckpointDevice {
 public:
  CallbackDevice(const ftsync_device_ops& ops, void* ctx) : ops_(ops), ctx_(ctx) {}
  std::string Name() const override { return ops_.name ? ops_.name : "c-api-device"; }
  Status Setup() override { return Call(ops_.setup ? ops_.setup(ctx_) : 0, "setup"); }
  Status Postsuspend(uint64_t e) override {
    return Call(ops_.postsuspend ? ops_.postsuspend(ctx_, e) : 0, "postsuspend");
  }
  Status Preresume(uint64_t e) override {
    return Call(ops_.preresume ? ops_.preresume(ctx_, e) : 0, "preresume");
  }
  Status Commit(uint64_t e) override { return Call(ops_.commit ? ops_.commit(ctx_, e) : 0, "commit"); }
  void Teardown() override {
    if (ops_.teardown) ops_.teardown(ctx_);
  }

 private:
  Status Call(int rc, const char* what) {
    if (rc == 0) return Status::OK();
    return Status::FromErrno(rc, "device " + Name() + " " + what);
  }
  ftsync_device_ops ops_;
  void* ctx_;
};

}  // namespace

struct ftsync_checkpointer {
  std::unique_ptr<CallbackDomain> domain;
  std::unique_ptr<ByteSink> sink;
  std::unique_ptr<ByteSource> source;
  std::vector<std::unique_ptr<CallbackDevice>> devices;
  std::unique_ptr<Checkpointer> cp;
  std::string error;
  int Ret(const Status& s) {
    if (s.ok()) return FTSYNC_OK;
    error = s.ToString();
    return Code(s);
  }
};

struct ftsync_receiver {
  std::unique_ptr<ReplicaImage> replica;
  std::unique_ptr<ByteSource> source;
  std::unique_ptr<ByteSink> sink;
  std::unique_ptr<Receiver> receiver;
  std::string memory_path;
  std::string error;
  bool handshaken = false;
  int Ret(const Status& s) {
    if (s.ok()) return FTSYNC_OK;
    error = s.ToString();
    return Code(s);
  }
};

extern "C" {

const char* ftsync_version(void) { return "0.1.0"; }

const char* ftsync_strerror(int code) {
  if (code > 0 || code < -static_cast<int>(Errc::kInternal)) return "unknown error";
  return ErrcName(static_cast<Errc>(-code));
}

void ftsync_checkpointer_options_init(ftsync_checkpointer_options* o) {
  CheckpointerOptions d;
  o->max_in_flight = d.max_in_flight;
  o->precopy_rounds = d.precopy_rounds;
  o->precopy_min_pages = d.precopy_min_pages;
  o->batch_pages = d.batch_pages;
  o->session = d.session;
  o->delta = NULL;
  o->delta_block_size = d.delta_block_size;
  o->shadow_budget_bytes = d.shadow_budget_bytes;
  o->compression = NULL;
  o->compression_level = d.compression_level;
  o->speculation = NULL;
  o->speculation_ticks = d.speculation_ticks;
}

int ftsync_checkpointer_create(const ftsync_domain_ops* ops, void* ctx, int stream_fd,
                               int back_channel_fd, const ftsync_checkpointer_options* options,
                               ftsync_checkpointer** out) {
  if (!ops || !out || stream_fd < 0 || back_channel_fd < 0 || ops->page_size == 0 ||
      ops->frame_count == 0 || !ops->enable_dirty_log || !ops->disable_dirty_log ||
      !ops->fetch_and_clear_dirty || !ops->redirty || !ops->suspend || !ops->resume ||
      !ops->read_frames || !ops->save_state || !ops->restore_state)
    return FTSYNC_EINVAL;
  ftsync_checkpointer_options o;
  ftsync_checkpointer_options_init(&o);
  if (options) o = *options;
  CheckpointerOptions co;
  co.max_in_flight = o.max_in_flight;
  co.precopy_rounds = o.precopy_rounds;
  co.precopy_min_pages = o.precopy_min_pages;
  co.batch_pages = o.batch_pages;
  co.session = o.session;
  co.delta_block_size = o.delta_block_size;
  co.shadow_budget_bytes = o.shadow_budget_bytes;
  co.compression_level = o.compression_level;
  if (o.delta) {
    Result<DeltaMode> m = ParseDeltaMode(o.delta);
    if (!m.ok()) return FTSYNC_EINVAL;
    co.delta = *m;
  }
  co.speculation_ticks = o.speculation_ticks;
  if (o.speculation) {
    Result<Speculation> sp = ParseSpeculation(o.speculation);
    if (!sp.ok()) return FTSYNC_EINVAL;
    co.speculation = *sp;
  }
  if (o.compression) {
    Result<Compression> c = ParseCompression(o.compression);
    if (!c.ok()) return FTSYNC_EINVAL;
    co.compression = *c;
  }
  auto* h = new ftsync_checkpointer;
  h->domain = std::make_unique<CallbackDomain>(*ops, ctx);
  h->sink = MakeFdSink(stream_fd);
  h->source = MakeFdSource(back_channel_fd);
  h->cp = std::make_unique<Checkpointer>(h->domain.get(), h->sink.get(), h->source.get(), co);
  *out = h;
  return FTSYNC_OK;
}

int ftsync_checkpointer_add_device(ftsync_checkpointer* cp, const ftsync_device_ops* ops, void* ctx) {
  if (!cp || !ops) return FTSYNC_EINVAL;
  cp->devices.push_back(std::make_unique<CallbackDevice>(*ops, ctx));
  return cp->Ret(cp->cp->AddDevice(cp->devices.back().get()));
}

int ftsync_checkpointer_start(ftsync_checkpointer* cp) { return cp ? cp->Ret(cp->cp->Start()) : FTSYNC_EINVAL; }
int ftsync_checkpointer_checkpoint(ftsync_checkpointer* cp) {
  return cp ? cp->Ret(cp->cp->Checkpoint()) : FTSYNC_EINVAL;
}
int ftsync_checkpointer_poll(ftsync_checkpointer* cp, int timeout_ms) {
  return cp ? cp->Ret(cp->cp->PollBackChannel(timeout_ms)) : FTSYNC_EINVAL;
}
int ftsync_checkpointer_speculate(ftsync_checkpointer* cp) {
  return cp ? cp->Ret(cp->cp->Speculate()) : FTSYNC_EINVAL;
}
int ftsync_checkpointer_wait_ack(ftsync_checkpointer* cp, uint64_t epoch) {
  return cp ? cp->Ret(cp->cp->WaitForAck(epoch)) : FTSYNC_EINVAL;
}
int ftsync_checkpointer_heartbeat(ftsync_checkpointer* cp) {
  return cp ? cp->Ret(cp->cp->SendHeartbeat()) : FTSYNC_EINVAL;
}
int ftsync_checkpointer_finish(ftsync_checkpointer* cp) { return cp ? cp->Ret(cp->cp->Finish()) : FTSYNC_EINVAL; }

static void CopyEpochStats(const EpochStats& s, ftsync_epoch_stats* o) {
  o->epoch = s.epoch;
  o->dirty_pages = s.dirty_pages;
  o->unreadable_pages = s.unreadable_pages;
  o->bytes_staged = s.bytes_staged;
  o->state_bytes = s.state_bytes;
  o->bytes_wire = s.bytes_wire;
  o->paused_us = s.paused_us;
  o->harvest_us = s.harvest_us;
  o->copy_us = s.copy_us;
  o->state_save_us = s.state_save_us;
  o->emit_us = s.emit_us;
  o->ack_latency_us = s.ack_latency_us;
  o->delta_pages = s.delta_pages;
  o->bytes_after_delta = s.bytes_after_delta;
  o->bytes_after_compression = s.bytes_after_compression;
  o->encode_us = s.encode_us;
  o->compress_us = s.compress_us;
  o->speculative_sends = s.speculative_sends;
  o->speculative_pages = s.speculative_pages;
  o->speculative_bytes = s.speculative_bytes;
  o->speculative_unchanged = s.speculative_unchanged;
}

int ftsync_checkpointer_get_stats(const ftsync_checkpointer* cp, ftsync_checkpointer_stats* o) {
  if (!cp || !o) return FTSYNC_EINVAL;
  CheckpointerStats s = cp->cp->stats();
  o->epochs_sent = s.epochs_sent;
  o->epochs_acked = s.epochs_acked;
  o->in_flight = s.in_flight;
  o->precopy_rounds = s.precopy_rounds;
  o->total_dirty_pages = s.total_dirty_pages;
  o->total_bytes_wire = s.total_bytes_wire;
  o->redirtied_pages = s.redirtied_pages;
  o->heartbeats_received = s.heartbeats_received;
  CopyEpochStats(s.last, &o->last);
  return FTSYNC_OK;
}

const char* ftsync_checkpointer_error(const ftsync_checkpointer* cp) {
  return cp ? cp->error.c_str() : "null checkpointer";
}
void ftsync_checkpointer_destroy(ftsync_checkpointer* cp) { delete cp; }

int ftsync_receiver_create(const char* replica_dir, int stream_fd, int back_channel_fd,
                           ftsync_receiver** out) {
  if (!replica_dir || !out || stream_fd < 0 || back_channel_fd < 0) return FTSYNC_EINVAL;
  Result<std::unique_ptr<ReplicaImage>> rep = ReplicaImage::Open(replica_dir);
  if (!rep.ok()) return Code(rep.status());
  auto* h = new ftsync_receiver;
  h->replica = std::move(rep).value();
  h->source = MakeFdSource(stream_fd);
  h->sink = MakeFdSink(back_channel_fd);
  h->receiver = std::make_unique<Receiver>(h->replica.get(), h->source.get(), h->sink.get());
  h->memory_path = h->replica->memory_path();
  *out = h;
  return FTSYNC_OK;
}

int ftsync_receiver_handshake(ftsync_receiver* r) {
  if (!r) return FTSYNC_EINVAL;
  int rc = r->Ret(r->receiver->Handshake());
  if (rc == FTSYNC_OK) r->handshaken = true;
  return rc;
}

int ftsync_receiver_step(ftsync_receiver* r) {
  if (!r) return FTSYNC_EINVAL;
  Result<bool> s = r->receiver->Step();
  if (!s.ok()) return r->Ret(s.status());
  return *s ? 1 : 0;
}

int ftsync_receiver_run(ftsync_receiver* r) {
  if (!r) return FTSYNC_EINVAL;
  if (!r->handshaken) {
    int rc = ftsync_receiver_handshake(r);
    if (rc != FTSYNC_OK) return rc;
  }
  return r->Ret(r->receiver->Run());
}

int ftsync_receiver_last_complete_epoch(const ftsync_receiver* r, uint64_t* epoch) {
  if (!r || !epoch) return FTSYNC_EINVAL;
  std::optional<uint64_t> e = r->receiver->last_complete_epoch();
  if (!e) return FTSYNC_ENOTFOUND;
  *epoch = *e;
  return FTSYNC_OK;
}

int ftsync_receiver_get_stats(const ftsync_receiver* r, ftsync_receiver_stats* o) {
  if (!r || !o) return FTSYNC_EINVAL;
  ReceiverStats s = r->receiver->stats();
  o->has_complete_epoch = s.has_complete_epoch;
  o->last_complete_epoch = s.last_complete_epoch;
  o->epochs_applied = s.epochs_applied;
  o->pages_applied = s.pages_applied;
  o->bytes_received = s.bytes_received;
  o->heartbeats_received = s.heartbeats_received;
  o->last_apply_us = s.last_apply_us;
  o->discarded_epochs = s.discarded_epochs;
  o->delta_pages_applied = s.delta_pages_applied;
  o->speculative_pages_applied = s.speculative_pages_applied;
  return FTSYNC_OK;
}

const char* ftsync_receiver_memory_path(const ftsync_receiver* r) { return r ? r->memory_path.c_str() : ""; }
const char* ftsync_receiver_error(const ftsync_receiver* r) { return r ? r->error.c_str() : "null receiver"; }
void ftsync_receiver_destroy(ftsync_receiver* r) { delete r; }

}  // extern "C"
