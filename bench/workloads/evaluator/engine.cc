// The workload benchmark's evaluation engine (engine.h).
#include "engine.h"

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <future>
#include <numeric>

namespace ftsync::wl {
namespace {
using namespace internal;

double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}
double MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) ;
  if (i > 0) --i;
  return v[std::min(i, v.size() - 1)];
}

template <typename T>
double Mean(const std::vector<T>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (T x : v) s += static_cast<double>(x);
  return s / static_cast<double>(v.size());
}

}  // namespace

// One reported configuration: a lane's records, plain or compressed.
struct Output {
  std::string name;
  std::unique_ptr<Compressor> comp;  // null: the lane's records as they are
  std::vector<uint64_t> end_bytes;   // per epoch
  std::vector<uint64_t> spec_bytes;  // per epoch
  std::vector<double> cpu_ns;        // per epoch: encode (+ compress)
  uint64_t spec_bytes_epoch = 0;
  double spec_comp_ns_epoch = 0;
  uint64_t check_failures = 0;
};

struct Engine::Lane {
  std::string name;
  std::unique_ptr<PageCoder> coder;
  std::unique_ptr<SpecDriver> spec;  // null: not speculative
  std::vector<uint8_t> state;        // speculative: 0, 1 sent, 2 sent then written
  std::vector<uint64_t> touched;     // pages with state != 0
  std::vector<uint8_t> end_out, spec_out;
  struct Rec {
    uint64_t pfn;
    uint32_t off, size;
    bool spec;
  };
  std::vector<Rec> recs;  // sampled pages' records of this epoch, in order
  double spec_cpu_ns = 0;
  std::vector<Output> outputs;
  std::vector<uint64_t> scratch;
  Lane* baseline_lane = nullptr;   // speculative: the same coder without speculation
  bool uses_cache_ref = false;     // XOR+RLE / XBZRLE: hits as the reference store's
  internal::ShadowStats stats0;    // shadow statistics after epoch 0
  uint64_t ref_hits = 0, ref_lookups = 0;
  // Totals.
  uint64_t end_pages = 0, spec_pages = 0, spared = 0, rewritten = 0;
  std::vector<uint64_t> end_pages_series, spec_pages_series;
};

struct Engine::Horizon {
  int ms = 0;
  int ticks = 0;
  int tick = 0;
  uint64_t epoch = 1;
  DirtyBitmap uni;
  uint8_t* sent = nullptr;  // the backup's image at the last boundary
  size_t sent_len = 0;
  std::vector<uint8_t> staging;
  std::vector<std::unique_ptr<Lane>> lanes;
  std::vector<uint64_t> pages_series;
  std::vector<double> pause_ms, pause_copy_ms;
  std::vector<double> epoch_guest_ms;
  double guest_ms_acc = 0;
  double guest_total = 0;   // guest ms since the start
  double next_end = 0;      // guest ms at which the current epoch ends
  int spec_tick = 0;        // the policies' tick number of this tick (1-based)
  std::vector<uint64_t> final_scratch;
  Lane* cache_ref = nullptr;  // the "runs" lane
  std::vector<uint8_t> cached;
  double copy_ns_sum = 0;
  uint64_t rotation = 0;
  uint64_t verify_failures = 0, verify_checked = 0;
  EpochEnd end_result{};
  bool ended = false;
  ~Horizon() {
    if (sent) munmap(sent, sent_len);
  }
};

Engine::~Engine() = default;

double Engine::eval_cpu_s() const {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Result<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& o, uint64_t frames,
                                               const uint8_t* ram) {
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = o;
  e->frames_ = frames;
  e->ram_ = ram;
  for (int ms : o.epoch_ms) {
    const double t = ms / o.tick_ms;
    if (ms <= 0 || std::fabs(t - std::round(t)) > 1e-9 || t < 1)
      return Status(Errc::kInvalidArgument, "epoch of " + std::to_string(ms) +
                                                " ms is not a whole number of ticks");
    auto h = std::make_unique<Horizon>();
    h->ms = ms;
    h->ticks = static_cast<int>(std::round(t));
    h->next_end = ms;
    h->uni.Resize(frames);
    h->sent_len = frames * kPage;
    void* p = mmap(nullptr, h->sent_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return Status::FromErrno(errno, "mapping the backup image");
    h->sent = static_cast<uint8_t*>(p);

    auto add = [&](const std::string& name, std::unique_ptr<PageCoder> coder,
                   std::unique_ptr<SpecDriver> spec, std::vector<std::string> comps) -> Status {
      auto lane = std::make_unique<Lane>();
      lane->name = name;
      lane->coder = std::move(coder);
      lane->spec = std::move(spec);
      if (lane->spec) lane->state.assign(frames, 0);
      lane->uses_cache_ref = lane->coder->kind() == RecordKind::kXorRle ||
                             lane->coder->kind() == RecordKind::kXbzrle;
      lane->outputs.emplace_back();
      lane->outputs.back().name = name;
      for (const std::string& c : comps) {
        auto comp = MakeCompressor(c);
        if (!comp.ok()) return comp.status();
        lane->outputs.emplace_back();
        lane->outputs.back().name = name + "+" + c;
        lane->outputs.back().comp = std::move(comp).value();
      }
      h->lanes.push_back(std::move(lane));
      return Status::OK();
    };
    auto shadow = [&](ShadowMode mode, DeltaFormat fmt, BlockSize bs) -> Result<std::unique_ptr<PageCoder>> {
      ShadowOptions so;
      so.mode = mode;
      so.memory_budget = o.shadow_budget;
      so.delta.format = fmt;
      so.delta.block_size = bs;
      return MakeShadowCoder(so);
    };
#define WL_TRY(expr)               \
  do {                             \
    Status s_ = (expr);            \
    if (!s_.ok()) return s_;       \
  } while (0)
#define WL_SHADOW(var, ...)                 \
  auto var##_r = shadow(__VA_ARGS__);       \
  if (!var##_r.ok()) return var##_r.status(); \
  auto var = std::move(var##_r).value()

    // The baseline comes first: factors are against it.
    // Compression alone (whole pages through zlib-1) is a reference, and the
    // costliest configuration to evaluate: only at 100 ms.
    WL_TRY(add("remus", MakeWholeCoder(), nullptr,
               ms == 100 ? std::vector<std::string>{"zlib-1"} : std::vector<std::string>{}));
    WL_TRY(add("remus-xor-rle", MakeXorRleCoder(), nullptr, {}));
    WL_TRY(add("xbzrle", MakeXbzrleCoder(), nullptr, {}));
    for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256}) {
      WL_SHADOW(c, ShadowMode::kCopy, DeltaFormat::kBlocks, bs);
      WL_TRY(add("blocks-" + std::to_string(BlockBytes(bs)), std::move(c), nullptr, {}));
    }
    {
      WL_SHADOW(c, ShadowMode::kCopy, DeltaFormat::kRuns, BlockSize::k64);
      WL_TRY(add("runs", std::move(c), nullptr, {"zlib-1", "zlib-6", "zstd-1", "lz4"}));
      h->cache_ref = h->lanes.back().get();
    }
    for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256}) {
      WL_SHADOW(c, ShadowMode::kBlockHash, DeltaFormat::kBlocks, bs);
      WL_TRY(add("hash-" + std::to_string(BlockBytes(bs)), std::move(c), nullptr, {}));
    }
    Lane* whole_lane = h->lanes.front().get();
    Lane* runs_lane = h->cache_ref;
    for (const SpecPolicyFactory& f : o.spec_policies) {
      // Speculation alone: pages whole, a rewritten one resent whole.
      WL_TRY(add("spec-" + f.name, MakeWholeCoder(), f.make(frames, h->ticks), {}));
      h->lanes.back()->baseline_lane = whole_lane;
      const bool combined = o.combined_policy.empty() ? &f == &o.spec_policies.front()
                                                      : f.name == o.combined_policy;
      // With fine-grained deltas (and, for the combined policy, compressed).
      WL_SHADOW(c, ShadowMode::kCopy, DeltaFormat::kRuns, BlockSize::k64);
      std::vector<std::string> comps;
      if (combined) comps = {"zlib-1", "zstd-1"};
      WL_TRY(add("spec-" + f.name + "+runs", std::move(c), f.make(frames, h->ticks), comps));
      h->lanes.back()->baseline_lane = runs_lane;
    }
#undef WL_SHADOW
#undef WL_TRY
    e->horizons_.push_back(std::move(h));
  }
  return e;
}

void Engine::Start() {
  constexpr uint64_t kChunk = 1024;
  auto seed = [this](Horizon* h) {
    std::vector<uint8_t> sink;
    std::memcpy(h->sent, ram_, frames_ * kPage);
    for (auto& lane : h->lanes) {
      for (uint64_t p0 = 0; p0 < frames_; p0 += kChunk) {
        sink.clear();
        for (uint64_t p = p0; p < std::min(frames_, p0 + kChunk); ++p)
          lane->coder->Encode(p, ram_ + p * kPage, h->sent + p * kPage, 0, &sink);
      }
      lane->stats0 = lane->coder->shadow_stats();
    }
  };
  std::vector<std::future<void>> rest;
  for (size_t i = 1; i < horizons_.size(); ++i)
    rest.push_back(std::async(opts_.threads > 1 ? std::launch::async : std::launch::deferred, seed,
                              horizons_[i].get()));
  if (!horizons_.empty()) seed(horizons_[0].get());
  for (auto& f : rest) f.get();
}

std::vector<EpochEnd> Engine::OnTick(std::span<const uint64_t> written, double run_ms) {
  ++ticks_;
  guest_ms_ += run_ms;
  // Epoch lengths are independent (own state, read-only guest memory): one
  // thread each, the first on the caller's. CPU times are per thread.
  auto work = [this, written, run_ms](Horizon* hp) {
    Horizon& h = *hp;
    h.ended = false;
    h.guest_ms_acc += run_ms;
    h.guest_total += run_ms;
    for (uint64_t p : written) h.uni.Set(p);
    for (auto& lane : h.lanes) {
      if (!lane->spec) continue;
      for (uint64_t p : written)
        if (lane->state[p] == 1) lane->state[p] = 2;
    }
    ++h.tick;
    // The epoch ends at the tick nearest to its nominal end in guest time
    // (ticks can run longer than tick_ms when QMP is slow).
    if (h.guest_total + run_ms / 2 >= h.next_end) {
      h.next_end += h.ms;
      if (h.next_end <= h.guest_total) h.next_end = h.guest_total + h.ms;
      h.end_result = EndEpoch(h);
      h.ended = true;
    } else {
      // The policies count ticks in guest time (nominal tick_ms each), so
      // that "the epoch's last tick" is the last before its end even when
      // ticks run long; strictly increasing.
      h.spec_tick = std::max(h.spec_tick + 1, static_cast<int>(std::lround(h.guest_ms_acc / opts_.tick_ms)));
      for (auto& lane : h.lanes)
        if (lane->spec) SpecTick(h, *lane, written);
    }
  };
  std::vector<std::future<void>> rest;
  for (size_t i = 1; i < horizons_.size(); ++i)
    rest.push_back(std::async(opts_.threads > 1 ? std::launch::async : std::launch::deferred, work,
                              horizons_[i].get()));
  if (!horizons_.empty()) work(horizons_[0].get());
  for (auto& f : rest) f.get();
  std::vector<EpochEnd> ends;
  verify_failures_ = verify_checked_ = 0;
  for (auto& h : horizons_) {
    if (h->ended) ends.push_back(h->end_result);
    verify_failures_ += h->verify_failures;
    verify_checked_ += h->verify_checked;
  }
  return ends;
}

void Engine::SpecTick(Horizon& h, Lane& lane, std::span<const uint64_t> written) {
  std::vector<uint64_t>& send = lane.scratch;
  send.clear();
  lane.spec->OnTick(h.spec_tick - 1, h.ticks, written, &send);
  if (send.empty()) return;
  const size_t from = lane.spec_out.size();
  const double t0 = ThreadCpuNs();
  for (uint64_t p : send) {
    if (p >= frames_) continue;
    const size_t off = lane.spec_out.size();
    const size_t n = lane.coder->Encode(p, ram_ + p * kPage, h.sent + p * kPage, h.epoch, &lane.spec_out);
    if (opts_.verify_every && p % opts_.verify_every == 0)
      lane.recs.push_back({p, static_cast<uint32_t>(off), static_cast<uint32_t>(n), true});
    if (lane.state[p] == 0) lane.touched.push_back(p);
    lane.state[p] = 1;
    ++lane.spec_pages;
  }
  lane.spec_cpu_ns += ThreadCpuNs() - t0;
  const size_t n = lane.spec_out.size() - from;
  for (Output& out : lane.outputs) {
    if (!out.comp) {
      out.spec_bytes_epoch += n;
      continue;
    }
    const double c0 = ThreadCpuNs();
    out.spec_bytes_epoch += out.comp->Compress(lane.spec_out.data() + from, n);
    out.spec_comp_ns_epoch += ThreadCpuNs() - c0;
  }
}

EpochEnd Engine::EndEpoch(Horizon& h) {
  std::vector<uint64_t> pages;
  h.uni.AppendSetBits(&pages);
  // The staging copy, as the real pipeline makes while the guest is paused.
  h.staging.resize(pages.size() * kPage);
  const double c0 = MonoNs();
  for (size_t i = 0; i < pages.size(); ++i)
    std::memcpy(h.staging.data() + i * kPage, ram_ + pages[i] * kPage, kPage);
  const double copy_ms = (MonoNs() - c0) * 1e-6;
  h.pages_series.push_back(pages.size());
  h.epoch_guest_ms.push_back(h.guest_ms_acc);
  h.guest_ms_acc = 0;

  h.copy_ns_sum += copy_ms * 1e6;
  h.cached.resize(pages.size());
  for (size_t i = 0; i < pages.size(); ++i) h.cached[i] = h.cache_ref->coder->Holds(pages[i]);
  const size_t nl = h.lanes.size();
  const size_t first = static_cast<size_t>(h.rotation++ % nl);
  for (size_t k = 0; k < nl; ++k) {
    Lane& lane = *h.lanes[(first + k) % nl];
    lane.end_out.clear();
    uint64_t sent_pages = 0;
    const double t0 = ThreadCpuNs();
    for (size_t i = 0; i < pages.size(); ++i) {
      const uint64_t p = pages[i];
      if (lane.spec && lane.state[p] == 1) continue;  // its speculative copy is current
      const size_t off = lane.end_out.size();
      const uint8_t* base = !lane.uses_cache_ref || h.cached[i] ? h.sent + p * kPage : nullptr;
      const size_t n = lane.coder->Encode(p, h.staging.data() + i * kPage, base, h.epoch, &lane.end_out);
      ++sent_pages;
      if (opts_.verify_every && p % opts_.verify_every == 0)
        lane.recs.push_back({p, static_cast<uint32_t>(off), static_cast<uint32_t>(n), false});
    }
    const double enc_ns = ThreadCpuNs() - t0 + lane.spec_cpu_ns;
    if (lane.uses_cache_ref) {
      lane.ref_lookups += pages.size();
      for (uint8_t c : h.cached) lane.ref_hits += c;
    }
    lane.end_pages += sent_pages;
    lane.end_pages_series.push_back(sent_pages);
    for (Output& out : lane.outputs) {
      uint64_t bytes = lane.end_out.size();
      double ns = enc_ns;
      if (out.comp) {
        const double z0 = ThreadCpuNs();
        bytes = out.comp->Compress(lane.end_out.data(), lane.end_out.size());
        ns += ThreadCpuNs() - z0 + out.spec_comp_ns_epoch;
        if (opts_.verify_every && h.epoch % 8 == 0 &&
            !out.comp->Check(lane.end_out.data(), lane.end_out.size()))
          ++out.check_failures, ++h.verify_failures;
      }
      out.end_bytes.push_back(bytes);
      out.spec_bytes.push_back(out.spec_bytes_epoch);
      out.cpu_ns.push_back(ns);
      out.spec_bytes_epoch = 0;
      out.spec_comp_ns_epoch = 0;
    }
    lane.spec_cpu_ns = 0;
  }

  Verify(h, pages);

  // Speculation bookkeeping, then the policies learn the epoch's outcome.
  for (auto& lp : h.lanes) {
    Lane& lane = *lp;
    if (!lane.spec) continue;
    auto& final_pages = h.final_scratch;
    final_pages.clear();
    for (uint64_t p : pages)
      if (lane.state[p] != 1) final_pages.push_back(p);
    uint64_t spec_this = 0;
    for (uint64_t p : lane.touched) {
      if (lane.state[p] == 2) ++lane.rewritten;
      else ++lane.spared;
      ++spec_this;
      lane.state[p] = 0;
    }
    lane.spec_pages_series.push_back(spec_this);
    lane.touched.clear();
    const Output& own = lane.outputs.front();
    lane.spec->OnEpochEnd(final_pages, lane.baseline_lane->outputs.front().end_bytes.back(),
                          own.spec_bytes.back(), own.end_bytes.back());
  }
  for (auto& lp : h.lanes) {
    lp->spec_out.clear();
    lp->recs.clear();
  }
  for (size_t i = 0; i < pages.size(); ++i)
    std::memcpy(h.sent + pages[i] * kPage, h.staging.data() + i * kPage, kPage);
  h.uni.ClearAll();
  h.tick = 0;
  h.spec_tick = 0;
  ++h.epoch;
  return EpochEnd{h.ms, pages.size(), copy_ms};
}

void Engine::Verify(Horizon& h, const std::vector<uint64_t>& pages) {
  if (!opts_.verify_every) return;
  uint8_t page[kPage];
  for (auto& lp : h.lanes) {
    Lane& lane = *lp;
    // Records of one pfn are in sending order (speculative ticks, then the
    // end); group them per pfn, stable.
    std::stable_sort(lane.recs.begin(), lane.recs.end(),
                     [](const Lane::Rec& a, const Lane::Rec& b) { return a.pfn < b.pfn; });
    size_t r = 0;
    for (size_t i = 0; i < pages.size(); ++i) {
      const uint64_t p = pages[i];
      if (p % opts_.verify_every) continue;
      while (r < lane.recs.size() && lane.recs[r].pfn < p) ++r;  // sent but not dirty: unchanged
      std::memcpy(page, h.sent + p * kPage, kPage);
      bool ok = true;
      for (; r < lane.recs.size() && lane.recs[r].pfn == p; ++r) {
        const Lane::Rec& rec = lane.recs[r];
        const uint8_t* buf = rec.spec ? lane.spec_out.data() : lane.end_out.data();
        if (!DecodeRecord(lane.coder->kind(), buf + rec.off, rec.size, page).ok()) ok = false;
      }
      ++h.verify_checked;
      if (!ok || std::memcmp(page, h.staging.data() + i * kPage, kPage) != 0) {
        ++h.verify_failures;
        ++lane.outputs.front().check_failures;
      }
    }
  }
}

void Engine::RecordPause(int epoch_ms, double pause_ms, double copy_ms, uint64_t pages) {
  for (auto& h : horizons_)
    if (h->ms == epoch_ms) {
      h->pause_ms.push_back(pause_ms);
      h->pause_copy_ms.push_back(copy_ms);
    }
  (void)pages;
}

nlohmann::json Engine::Summary() const {
  using nlohmann::json;
  json out = json::array();
  for (const auto& hp : horizons_) {
    const Horizon& h = *hp;
    json hj;
    hj["epoch_ms"] = h.ms;
    hj["ticks_per_epoch"] = h.ticks;
    hj["epochs"] = h.pages_series.size();
    hj["dirty_pages_per_epoch"] = {{"mean", Mean(h.pages_series)},
                                   {"p50", Percentile(std::vector<double>(h.pages_series.begin(), h.pages_series.end()), 0.5)},
                                   {"max", h.pages_series.empty() ? 0 : *std::max_element(h.pages_series.begin(), h.pages_series.end())}};
    hj["guest_ms_per_epoch"] = Mean(h.epoch_guest_ms);
    hj["pause_ms"] = {{"samples", h.pause_ms.size()},
                      {"p50", Percentile(h.pause_ms, 0.5)},
                      {"p90", Percentile(h.pause_ms, 0.9)},
                      {"p99", Percentile(h.pause_ms, 0.99)},
                      {"max", Percentile(h.pause_ms, 1.0)},
                      {"copy_p50", Percentile(h.pause_copy_ms, 0.5)}};
    hj["staging_copy_us_per_epoch"] = h.pages_series.empty() ? 0.0 : h.copy_ns_sum * 1e-3 / static_cast<double>(h.pages_series.size());
    const Output& base = h.lanes.front()->outputs.front();
    const double base_sum = std::accumulate(base.end_bytes.begin(), base.end_bytes.end(), 0.0);
    json cj = json::array();
    for (const auto& lp : h.lanes) {
      const Lane& lane = *lp;
      internal::ShadowStats ss = lane.coder->shadow_stats();
      ss.encodes -= lane.stats0.encodes;
      ss.hits -= lane.stats0.hits;
      ss.evictions -= lane.stats0.evictions;
      for (const Output& o : lane.outputs) {
        const double end_sum = std::accumulate(o.end_bytes.begin(), o.end_bytes.end(), 0.0);
        const double spec_sum = std::accumulate(o.spec_bytes.begin(), o.spec_bytes.end(), 0.0);
        std::vector<double> cpu_us;
        for (double ns : o.cpu_ns) cpu_us.push_back(ns * 1e-3);
        std::vector<double> end_d(o.end_bytes.begin(), o.end_bytes.end());
        json c;
        c["config"] = o.name;
        c["speculative"] = static_cast<bool>(lane.spec);
        c["compressor"] = o.comp ? o.name.substr(lane.name.size() + 1) : "";
        c["end_bytes_per_epoch"] = {{"mean", Mean(o.end_bytes)}, {"p50", Percentile(end_d, 0.5)},
                                    {"p99", Percentile(end_d, 0.99)}};
        c["end_factor"] = end_sum > 0 ? base_sum / end_sum : (base_sum > 0 ? INFINITY : 1.0);
        c["spec_bytes_per_epoch"] = Mean(o.spec_bytes);
        c["total_bytes_per_epoch"] = Mean(o.end_bytes) + Mean(o.spec_bytes);
        c["total_vs_baseline"] = base_sum > 0 ? (end_sum + spec_sum) / base_sum : 1.0;
        c["encode_cpu_us_per_epoch"] = {{"mean", Mean(cpu_us)}, {"p50", Percentile(cpu_us, 0.5)},
                                        {"p99", Percentile(cpu_us, 0.99)}};
        c["pages_sent_at_end_per_epoch"] = Mean(lane.end_pages_series);
        if (lane.spec) {
          // Against the same encoding without speculation (remus or runs,
          // the same compressor if any): the policy's 1.2x budget.
          const Lane& bl = *lane.baseline_lane;
          const Output* bo = &bl.outputs.front();
          for (const Output& x : bl.outputs)
            if (o.comp && x.comp && x.name.substr(bl.name.size()) == o.name.substr(lane.name.size())) bo = &x;
          const double bsum = std::accumulate(bo->end_bytes.begin(), bo->end_bytes.end(), 0.0);
          c["total_vs_nonspec"] = bsum > 0 ? (end_sum + spec_sum) / bsum : 1.0;
          c["nonspec_config"] = bo->name;
          c["spec_pages_per_epoch"] = Mean(lane.spec_pages_series);
          c["spec_rewritten_fraction"] =
              lane.spec_pages ? static_cast<double>(lane.rewritten) / static_cast<double>(lane.spec_pages) : 0.0;
        }
        if (ss.encodes) {
          c["shadow"] = {{"memory_bytes", lane.coder->shadow_memory()},
                         {"hit_rate", static_cast<double>(ss.hits) / static_cast<double>(ss.encodes)},
                         {"evictions", ss.evictions}};
        }
        if (lane.uses_cache_ref && lane.ref_lookups)
          c["cache_hit_rate"] = static_cast<double>(lane.ref_hits) / static_cast<double>(lane.ref_lookups);
        double cpu_sum = 0;
        for (double ns : o.cpu_ns) cpu_sum += ns;
        c["cpu_vs_memcpy"] = h.copy_ns_sum > 0 ? cpu_sum / h.copy_ns_sum : 0.0;
        c["check_failures"] = o.check_failures;
        cj.push_back(c);
      }
    }
    hj["configs"] = cj;
    out.push_back(hj);
  }
  return out;
}

nlohmann::json Engine::Series() const {
  using nlohmann::json;
  json out = json::array();
  for (const auto& hp : horizons_) {
    const Horizon& h = *hp;
    json hj;
    hj["epoch_ms"] = h.ms;
    hj["dirty_pages"] = h.pages_series;
    std::vector<double> gms;
    for (double v : h.epoch_guest_ms) gms.push_back(std::round(v * 100) / 100);
    hj["guest_ms"] = gms;
    std::vector<double> pause;
    for (double v : h.pause_ms) pause.push_back(std::round(v * 1000) / 1000);
    hj["pause_ms"] = pause;
    json cj = json::object();
    for (const auto& lp : h.lanes)
      for (const Output& o : lp->outputs) cj[o.name] = {{"end_bytes", o.end_bytes}, {"spec_bytes", o.spec_bytes}};
    hj["configs"] = cj;
    out.push_back(hj);
  }
  return out;
}

}  // namespace ftsync::wl
