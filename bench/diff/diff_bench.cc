// ftsync_diff_bench: the page-delta microbenchmark.
//
// For synthetic page changes (nothing, 1 byte, 64 scattered bytes, 10% and
// 50% of the page in runs, 10% scattered bytes, every byte), measures per
// configuration the time to compare or encode a set of dirty pages against
// their last sent versions, as a ratio to memcpy of the same pages (each
// timed pass paired with a memcpy pass just before it; median of the
// ratios; 1.00 = as costly as copying the page once, which Remus's baseline
// does for every dirty page), and the encoded bytes per page. The
// baselines are our XOR+RLE (Remus) and XBZRLE (QEMU) encoders; a baseline
// encoding that would not fit in a page counts as the whole page (4097 bytes,
// as a WHOLE delta) and its time includes copying the page out.
//
// The page set is larger than the last-level cache by default (8192 pages:
// 32 MiB of old and 32 MiB of new versions), as the shadow copies of an
// epoch ago are; --pages 64 gives the cache-resident case.
//
// A second table measures the whole epoch encoding path end to end, the
// code the Checkpointer runs with the guest resumed (DeltaEmitter: shadow
// store, PAGE_DELTA/PAGE_DATA bodies, record checksums, COMPRESSED records)
// writing into a memory buffer, for each delta mode and codec, against the
// same memcpy and against the XOR+RLE and XBZRLE encoders (per page, as
// those systems send them, unframed). Besides the random pages above it
// uses pages read from files under /usr/lib and /usr/share (code, data,
// text: compressible like real guest memory), changed the same ways.
//
// Usage: ftsync_diff_bench [--pages N] [--reps N] [--epoch-only]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../timing.h"
#include "diff/baseline_codecs.h"
#include "diff/block_compare.h"
#include "diff/page_delta.h"
#include "diff/shadow_store.h"
#include "epoch/delta_emitter.h"
#include "ftsync/io.h"
#include "stream/compression.h"
#include "stream/record_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

namespace ftsync::bench {
namespace {
using namespace internal;

constexpr size_t kPage = kDiffPageSize;

// Base and new versions of `pages` pages, changed the scenario's way.
struct Scenario {
  std::string name;
  size_t pages;
  std::vector<uint8_t> base, cur;
  const uint8_t* Base(size_t i) const { return base.data() + i * kPage; }
  const uint8_t* Cur(size_t i) const { return cur.data() + i * kPage; }
};

enum class Change { kNone, kOneByte, kScattered64, kRuns10, kScattered10, kRuns50, kAll };

// Fills `out` with the bytes of regular files under a few system
// directories, in name order (deterministic on one machine), repeating
// them if they are not enough. False if nothing could be read.
bool FillFromFiles(std::vector<uint8_t>* out) {
  std::vector<std::string> files;
  for (const char* dir : {"/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/usr/bin"}) {
    DIR* d = opendir(dir);
    if (!d) continue;
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') files.push_back(std::string(dir) + "/" + e->d_name);
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  size_t at = 0;
  for (int pass = 0; pass < 4 && at < out->size(); ++pass) {
    for (const std::string& f : files) {
      int fd = open(f.c_str(), O_RDONLY);
      if (fd < 0) continue;
      ssize_t n;
      while (at < out->size() && (n = read(fd, out->data() + at, std::min<size_t>(out->size() - at, 1 << 20))) > 0)
        at += static_cast<size_t>(n);
      close(fd);
      if (at == out->size()) return true;
    }
    if (at == 0) return false;
  }
  for (size_t i = at; i < out->size(); ++i) (*out)[i] = (*out)[i - at];
  return true;
}

Scenario MakeScenario(const char* name, Change change, size_t pages, uint64_t seed,
                      bool file_pages = false) {
  Scenario s{name, pages, std::vector<uint8_t>(pages * kPage), {}};
  Rng rng(seed);
  if (!file_pages || !FillFromFiles(&s.base)) {
    for (size_t i = 0; i < s.base.size(); i += 8) {
      uint64_t v = rng.Next();
      std::memcpy(&s.base[i], &v, 8);
    }
  }
  s.cur = s.base;
  std::vector<uint64_t> scratch;
  std::vector<bool> changed(kPage);
  for (size_t p = 0; p < pages; ++p) {
    uint8_t* c = s.cur.data() + p * kPage;
    auto flip = [&](size_t i) { c[i] = static_cast<uint8_t>(s.base[p * kPage + i] ^ (1 + rng.Below(255))); };
    auto scattered = [&](size_t n) {
      for (uint64_t i : DistinctRandom(&rng, n, kPage, &scratch)) flip(i);
    };
    auto runs = [&](size_t target) {  // random runs of 1..64 bytes until `target` bytes differ
      std::fill(changed.begin(), changed.end(), false);
      size_t done = 0;
      while (done < target) {
        size_t off = rng.Below(kPage), len = 1 + rng.Below(64);
        for (size_t i = off; i < off + len && i < kPage && done < target; ++i) {
          flip(i);
          done += !changed[i];
          changed[i] = true;
        }
      }
    };
    switch (change) {
      case Change::kNone:
        break;
      case Change::kOneByte:
        scattered(1);
        break;
      case Change::kScattered64:
        scattered(64);
        break;
      case Change::kRuns10:
        runs(kPage / 10);
        break;
      case Change::kScattered10:
        scattered(kPage / 10);
        break;
      case Change::kRuns50:
        runs(kPage / 2);
        break;
      case Change::kAll:
        for (size_t i = 0; i < kPage; ++i) flip(i);
        break;
    }
  }
  return s;
}

// One row: `prepare` (untimed) then `run` over every page; `run` returns
// the encoded bytes (0 for compare-only rows).
struct Config {
  std::string name;
  std::function<void(const Scenario&)> prepare;
  std::function<uint64_t(const Scenario&)> run;
  bool has_size;
};

// Output area: every page's encoding back to back, as into a send buffer.
std::vector<uint8_t> g_out;
std::vector<uint8_t> g_sink;  // memcpy destination
uint64_t g_checksum = 0;      // keeps compare results alive

std::span<uint8_t, kMaxDeltaSize> OutAt(uint64_t offset) {
  return std::span<uint8_t, kMaxDeltaSize>(g_out.data() + offset, kMaxDeltaSize);
}

Config CompareBlocks(DiffIsa isa, BlockSize bs) {
  return {std::string("compare blocks-") + std::to_string(BlockBytes(bs)) + " " + DiffIsaName(isa),
          [isa](const Scenario&) { (void)SetDiffIsaForTesting(isa); },
          [bs](const Scenario& s) {
            uint64_t x = 0;
            for (size_t i = 0; i < s.pages; ++i) x += ChangedBlocks(s.Base(i), s.Cur(i), bs);
            g_checksum += x;
            return uint64_t{0};
          },
          false};
}

Config CompareRuns(DiffIsa isa) {
  return {std::string("compare runs ") + DiffIsaName(isa),
          [isa](const Scenario&) { (void)SetDiffIsaForTesting(isa); },
          [](const Scenario& s) {
            static ByteRun runs[kMaxRuns];
            uint64_t x = 0;
            for (size_t i = 0; i < s.pages; ++i)
              x += ChangedRuns(s.Base(i), s.Cur(i), 4, std::span<ByteRun, kMaxRuns>(runs));
            g_checksum += x;
            return uint64_t{0};
          },
          false};
}

Config EncodeDelta(const std::string& name, DiffIsa isa, DeltaOptions o) {
  return {name, [isa](const Scenario&) { (void)SetDiffIsaForTesting(isa); },
          [o](const Scenario& s) {
            uint64_t n = 0;
            for (size_t i = 0; i < s.pages; ++i) n += EncodePageDelta(s.Base(i), s.Cur(i), o, OutAt(n)).size;
            return n;
          },
          true};
}

using BaselineFn = std::optional<size_t> (*)(const uint8_t*, const uint8_t*, std::span<uint8_t>);
Config EncodeBaseline(const std::string& name, BaselineFn fn) {
  return {name, [](const Scenario&) {},
          [fn](const Scenario& s) {
            uint64_t n = 0;
            for (size_t i = 0; i < s.pages; ++i) {
              uint8_t* out = g_out.data() + n;
              auto size = fn(s.Base(i), s.Cur(i), std::span<uint8_t>(out + 1, kPage));
              if (size) {
                out[0] = 1;  // a one-byte "encoded" tag, as a record would carry
                n += 1 + *size;
              } else {  // sent whole, as both systems do
                out[0] = 0;
                std::memcpy(out + 1, s.Cur(i), kPage);
                n += 1 + kPage;
              }
            }
            return n;
          },
          true};
}

// The shadow store's Encode, the store holding every base page.
Config Shadow(const std::string& name, ShadowMode mode, DeltaOptions o) {
  auto store = std::make_shared<std::unique_ptr<ShadowStore>>();
  return {name,
          [store, mode, o](const Scenario& s) {
            (void)SetDiffIsaForTesting(BestDiffIsa());
            ShadowOptions so;
            so.mode = mode;
            so.delta = o;
            so.ways = 16;
            so.hash_seed = 1;
            size_t entry = mode == ShadowMode::kCopy ? kPage : BlocksPerPage(o.block_size) * 8;
            so.memory_budget = (s.pages * 4 + 64) * (entry + 32);  // no conflict misses
            if (!*store || (*store)->options().memory_budget != so.memory_budget ||
                (*store)->options().mode != mode)
              *store = std::move(*ShadowStore::Create(so));
            (*store)->Clear();
            for (size_t i = 0; i < s.pages; ++i) (void)(*store)->Encode(i, s.Base(i), 0, OutAt(0));
          },
          [store](const Scenario& s) {
            uint64_t n = 0;
            size_t misses = 0;
            for (size_t i = 0; i < s.pages; ++i) {
              ShadowEncoded e = (*store)->Encode(i, s.Cur(i), 1, OutAt(n));
              n += e.size;
              misses += !e.hit;
            }
            if (misses) std::fprintf(stderr, "note: %zu of %zu pages missed the shadow store\n", misses, s.pages);
            return n;
          },
          true};
}

// Size of a hypothetical RUNS layout with ULEB128 fields (kind, count,
// then per run: bytes skipped since the previous run, length, bytes), from
// the runs at merge gap 2 (a gap of up to 2 bytes costs no more than the
// 2-byte header of a new run). Computed, not encoded: a size model for the
// recommendation, exact for the runs found.
size_t Uleb(size_t v) { return v < 128 ? 1 : v < 16384 ? 2 : 3; }
double VarintRunsBytes(const Scenario& s) {
  static ByteRun runs[kMaxRuns];
  uint64_t total = 0;
  for (size_t i = 0; i < s.pages; ++i) {
    size_t n = ChangedRuns(s.Base(i), s.Cur(i), 2, std::span<ByteRun, kMaxRuns>(runs));
    if (n == 0) {
      total += kDeltaSameSize;
      continue;
    }
    size_t size = 1 + Uleb(n), prev_end = 0;
    for (size_t k = 0; k < n; ++k) {
      size += Uleb(runs[k].offset - prev_end) + Uleb(runs[k].length) + runs[k].length;
      prev_end = runs[k].offset + runs[k].length;
    }
    total += size < kDeltaWholeSize ? size : kDeltaWholeSize;
  }
  return static_cast<double>(total) / static_cast<double>(s.pages);
}

// ---- end to end: one epoch through the Checkpointer's encoding path ----

// A send buffer: every record appended, nothing else.
class MemorySink : public ByteSink {
 public:
  Status Write(std::span<const ConstBuffer> bufs) override {
    for (ConstBuffer b : bufs) {
      if (n_ + b.size() > buf_.size()) buf_.resize(std::max(buf_.size() * 2, n_ + b.size()));
      std::memcpy(buf_.data() + n_, b.data(), b.size());
      n_ += b.size();
    }
    return Status::OK();
  }
  Status Close() override { return Status::OK(); }
  void Reset() { n_ = 0; }
  size_t size() const { return n_; }

 private:
  std::vector<uint8_t> buf_;
  size_t n_ = 0;
};

struct EpochConfig {
  std::string name;
  bool delta;  // false: whole pages (Remus)
  ShadowMode mode = ShadowMode::kCopy;
  DeltaOptions o{};
  Codec codec = Codec::kNone;
  int level = 0;
};

// Runs one epoch of `s` (every page dirty, its base already sent) through
// DeltaEmitter or whole PAGE_DATA records into `sink`; returns seconds.
struct EpochRun {
  std::unique_ptr<ShadowStore> store;
  std::unique_ptr<DeltaEmitter> emitter;
  MemorySink sink;
  std::unique_ptr<RecordWriter> writer;
  std::vector<uint64_t> pfns;
  double encode_s = 0;

  void Prepare(const EpochConfig& c, const Scenario& s) {
    (void)SetDiffIsaForTesting(BestDiffIsa());
    sink.Reset();
    writer = std::make_unique<RecordWriter>(&sink);
    (void)writer->SetCompression(c.codec, c.level);
    pfns.resize(s.pages);
    for (size_t i = 0; i < s.pages; ++i) pfns[i] = i;
    emitter = std::make_unique<DeltaEmitter>(1024);
    if (!c.delta) return;
    ShadowOptions so;
    so.mode = c.mode;
    so.delta = c.o;
    so.ways = 16;
    so.hash_seed = 1;
    size_t entry = c.mode == ShadowMode::kCopy ? kPage : BlocksPerPage(c.o.block_size) * 8;
    so.memory_budget = (s.pages * 4 + 64) * (entry + 32);  // no conflict misses
    store = std::move(*ShadowStore::Create(so));
    for (size_t i = 0; i < s.pages; ++i) store->Record(i, s.Base(i), 0);
  }
  uint64_t Run(const EpochConfig& c, const Scenario& s) {
    if (c.delta) {
      DeltaEmitStats st;
      (void)emitter->Emit(store.get(), 1, pfns, s.cur.data(),
                          [&](const std::function<Status(RecordWriter&)>& f) { return f(*writer); }, &st);
      encode_s = static_cast<double>(st.encode_ns) * 1e-9;
    } else {
      for (size_t i = 0; i < s.pages; i += 1024) {
        size_t n = std::min<size_t>(1024, s.pages - i);
        (void)writer->PageData(std::span<const uint64_t>(pfns.data() + i, n), s.Cur(i), kPage);
      }
    }
    return sink.size();
  }
};

void EpochTable(size_t pages, int reps) {
  std::vector<EpochConfig> cfgs = {
      {"whole pages (Remus)", false},
      {"whole + zlib-1", false, ShadowMode::kCopy, {}, Codec::kZlib, 1},
      {"whole + zstd-1", false, ShadowMode::kCopy, {}, Codec::kZstd, 1},
      {"runs", true, ShadowMode::kCopy, {DeltaFormat::kRuns, BlockSize::k64, 4}},
      {"runs + zstd-1 (default)", true, ShadowMode::kCopy, {DeltaFormat::kRuns, BlockSize::k64, 4}, Codec::kZstd, 1},
      {"runs + zstd-3", true, ShadowMode::kCopy, {DeltaFormat::kRuns, BlockSize::k64, 4}, Codec::kZstd, 3},
      {"runs + zlib-1", true, ShadowMode::kCopy, {DeltaFormat::kRuns, BlockSize::k64, 4}, Codec::kZlib, 1},
      {"runs + zlib-6", true, ShadowMode::kCopy, {DeltaFormat::kRuns, BlockSize::k64, 4}, Codec::kZlib, 6},
      {"auto-64", true, ShadowMode::kCopy, {DeltaFormat::kAuto, BlockSize::k64, 4}},
      {"blocks-64", true, ShadowMode::kCopy, {DeltaFormat::kBlocks, BlockSize::k64, 4}},
      {"blocks-128", true, ShadowMode::kCopy, {DeltaFormat::kBlocks, BlockSize::k128, 4}},
      {"blocks-256", true, ShadowMode::kCopy, {DeltaFormat::kBlocks, BlockSize::k256, 4}},
      {"hash-64", true, ShadowMode::kBlockHash, {DeltaFormat::kBlocks, BlockSize::k64, 4}},
      {"hash-128", true, ShadowMode::kBlockHash, {DeltaFormat::kBlocks, BlockSize::k128, 4}},
      {"hash-256", true, ShadowMode::kBlockHash, {DeltaFormat::kBlocks, BlockSize::k256, 4}},
      {"hash-64 + zstd-1", true, ShadowMode::kBlockHash, {DeltaFormat::kBlocks, BlockSize::k64, 4}, Codec::kZstd, 1},
  };
  struct Sc {
    const char* name;
    Change change;
    bool files;
  };
  const Sc scs[] = {{"64 B scat", Change::kScattered64, false}, {"10% runs", Change::kRuns10, false},
                    {"100%", Change::kAll, false},             {"f:1 B", Change::kOneByte, true},
                    {"f:64 B scat", Change::kScattered64, true}, {"f:10% runs", Change::kRuns10, true},
                    {"f:50% runs", Change::kRuns50, true},     {"f:100%", Change::kAll, true}};
  const size_t ns = sizeof scs / sizeof scs[0];
  // Baselines: per-page encoders, unframed.
  Config xr = EncodeBaseline("XOR+RLE (Remus)", XorRleEncode);
  Config xb = EncodeBaseline("XBZRLE (QEMU)", XbzrleEncode);
  const size_t nrows = cfgs.size() + 2;
  std::vector<std::vector<double>> ratio(nrows, std::vector<double>(ns)), bytes = ratio, enc = ratio;
  std::vector<double> memcpy_s(ns);
  for (size_t k = 0; k < ns; ++k) {
    Scenario s = MakeScenario(scs[k].name, scs[k].change, pages, 2000 + k, scs[k].files);
    auto copy_pass = [&] {
      for (size_t i = 0; i < pages; ++i) std::memcpy(g_sink.data() + i * kPage, s.Cur(i), kPage);
      DoNotOptimize(g_sink[pages * kPage - 1]);
    };
    std::vector<double> copy_times;
    for (size_t c = 0; c < nrows; ++c) {
      std::vector<double> ratios, encs;
      uint64_t out = 0;
      EpochRun run;
      for (int r = 0; r <= reps; ++r) {
        double tc = TimeOnce(copy_pass);
        double t;
        if (c < cfgs.size()) {
          run.Prepare(cfgs[c], s);
          uint64_t t0 = NowNs();
          out = run.Run(cfgs[c], s);
          t = static_cast<double>(NowNs() - t0) * 1e-9;
          encs.push_back(run.encode_s / tc);
        } else {
          Config& b = c == cfgs.size() ? xr : xb;
          uint64_t t0 = NowNs();
          out = b.run(s);
          t = static_cast<double>(NowNs() - t0) * 1e-9;
        }
        if (r == 0) continue;
        ratios.push_back(t / tc);
        copy_times.push_back(tc);
      }
      ratio[c][k] = Median(ratios);
      enc[c][k] = encs.empty() ? 0 : Median(encs);
      bytes[c][k] = static_cast<double>(out) / static_cast<double>(pages);
    }
    memcpy_s[k] = Median(copy_times);
  }
  auto name = [&](size_t c) {
    return c < cfgs.size() ? cfgs[c].name : c == cfgs.size() ? xr.name : xb.name;
  };
  auto header = [&](const char* title) {
    std::printf("\n%-28s", title);
    for (size_t k = 0; k < ns; ++k) std::printf(" %11s", scs[k].name);
    std::printf("\n");
  };
  std::printf("\nEnd to end: one epoch of %zu dirty pages through the encoding path into a send\n"
              "buffer (records, checksums, compression); f: = pages from system files.\n", pages);
  header("epoch time / memcpy time");
  std::printf("%-28s", "memcpy (GB/s)");
  for (size_t k = 0; k < ns; ++k) std::printf(" %11.2f", GBps(pages * kPage, memcpy_s[k]));
  std::printf("\n");
  for (size_t c = 0; c < nrows; ++c) {
    std::printf("%-28s", name(c).c_str());
    for (size_t k = 0; k < ns; ++k) std::printf(" %11.2f", ratio[c][k]);
    std::printf("\n");
  }
  header("of which delta encode");
  for (size_t c = 0; c < cfgs.size(); ++c) {
    if (!cfgs[c].delta) continue;
    std::printf("%-28s", name(c).c_str());
    for (size_t k = 0; k < ns; ++k) std::printf(" %11.2f", enc[c][k]);
    std::printf("\n");
  }
  header("bytes on the wire / page");
  for (size_t c = 0; c < nrows; ++c) {
    std::printf("%-28s", name(c).c_str());
    for (size_t k = 0; k < ns; ++k) std::printf(" %11.1f", bytes[c][k]);
    std::printf("\n");
  }
  header("factor vs whole pages");
  for (size_t c = 1; c < nrows; ++c) {
    std::printf("%-28s", name(c).c_str());
    for (size_t k = 0; k < ns; ++k) std::printf(" %11.1f", bytes[0][k] / std::max(1.0, bytes[c][k]));
    std::printf("\n");
  }
}

}  // namespace

int Main(int argc, char** argv) {
  size_t pages = 8192;
  int reps = 9;
  bool epoch_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--epoch-only") {
      epoch_only = true;
    } else if (a == "--pages" && i + 1 < argc) {
      pages = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--pages N] [--reps N] [--epoch-only]\n", argv[0]);
      return 2;
    }
  }
  if (pages == 0 || reps < 1) return 2;
  g_out.assign(pages * kMaxDeltaSize + kMaxDeltaSize, 0);
  g_sink.assign(pages * kPage, 0);
  if (epoch_only) {
    EpochTable(pages, reps);
    return 0;
  }

  const struct {
    const char* name;
    Change change;
  } kScenarios[] = {{"same", Change::kNone},          {"1 B", Change::kOneByte},
                    {"64 B scat", Change::kScattered64}, {"10% runs", Change::kRuns10},
                    {"10% scat", Change::kScattered10},  {"50% runs", Change::kRuns50},
                    {"100%", Change::kAll}};

  std::vector<Config> configs;
  std::vector<DiffIsa> isas;
  for (DiffIsa isa : {DiffIsa::kScalar, DiffIsa::kAvx2, DiffIsa::kAvx512})
    if (DiffIsaSupported(isa)) isas.push_back(isa);
  const DiffIsa best = BestDiffIsa();
  for (DiffIsa isa : isas) configs.push_back(CompareBlocks(isa, BlockSize::k64));
  configs.push_back(CompareBlocks(best, BlockSize::k256));
  for (DiffIsa isa : isas) configs.push_back(CompareRuns(isa));
  for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256})
    configs.push_back(EncodeDelta("encode blocks-" + std::to_string(BlockBytes(bs)), best,
                                  {DeltaFormat::kBlocks, bs, 4}));
  configs.push_back(EncodeDelta("encode runs gap0", best, {DeltaFormat::kRuns, BlockSize::k64, 0}));
  configs.push_back(EncodeDelta("encode runs gap4", best, {DeltaFormat::kRuns, BlockSize::k64, 4}));
  configs.push_back(EncodeDelta("encode runs gap4 scalar", DiffIsa::kScalar,
                                {DeltaFormat::kRuns, BlockSize::k64, 4}));
  configs.push_back(EncodeDelta("encode auto-64 gap0", best, {DeltaFormat::kAuto, BlockSize::k64, 0}));
  configs.push_back(EncodeBaseline("XOR+RLE (Remus)", XorRleEncode));
  configs.push_back(EncodeBaseline("XBZRLE (QEMU)", XbzrleEncode));
  configs.push_back(Shadow("shadow copy, runs gap4", ShadowMode::kCopy, {DeltaFormat::kRuns, BlockSize::k64, 4}));
  configs.push_back(Shadow("shadow copy, blocks-64", ShadowMode::kCopy, {DeltaFormat::kBlocks, BlockSize::k64, 4}));
  for (BlockSize bs : {BlockSize::k64, BlockSize::k128, BlockSize::k256})
    configs.push_back(Shadow("shadow hash, blocks-" + std::to_string(BlockBytes(bs)),
                             ShadowMode::kBlockHash, {DeltaFormat::kBlocks, bs, 4}));

  const size_t ns = sizeof kScenarios / sizeof kScenarios[0];
  std::vector<double> memcpy_s(ns);
  std::vector<std::vector<double>> ratio(configs.size(), std::vector<double>(ns));
  std::vector<std::vector<double>> bytes(configs.size(), std::vector<double>(ns));
  std::vector<double> varint_bytes(ns);

  {  // Warm up: let the clock settle before the first measurement.
    std::vector<uint8_t> a(pages * kPage, 1);
    uint64_t t0 = NowNs();
    while (NowNs() - t0 < 300000000) {
      std::memcpy(g_sink.data(), a.data(), a.size());
      DoNotOptimize(g_sink[0]);
    }
  }

  for (size_t k = 0; k < ns; ++k) {
    Scenario s = MakeScenario(kScenarios[k].name, kScenarios[k].change, pages, 1000 + k);
    varint_bytes[k] = VarintRunsBytes(s);
    auto copy_pass = [&] {
      for (size_t i = 0; i < pages; ++i) std::memcpy(g_sink.data() + i * kPage, s.Cur(i), kPage);
      DoNotOptimize(g_sink[pages * kPage - 1]);
    };
    std::vector<double> copy_times;
    for (size_t c = 0; c < configs.size(); ++c) {
      Config& cfg = configs[c];
      std::vector<double> ratios;
      uint64_t out_bytes = 0;
      // Each timed pass is paired with a memcpy pass just before it; the
      // figure is the median of the per-pair ratios (drift of a shared
      // machine moves both). The first pair warms up, untimed.
      for (int r = 0; r <= reps; ++r) {
        double tc = TimeOnce(copy_pass);
        cfg.prepare(s);
        uint64_t t0 = NowNs();
        out_bytes = cfg.run(s);
        double t = static_cast<double>(NowNs() - t0) * 1e-9;
        DoNotOptimize(g_out[0]);
        if (r == 0) continue;
        ratios.push_back(t / tc);
        copy_times.push_back(tc);
      }
      ratio[c][k] = Median(ratios);
      bytes[c][k] = static_cast<double>(out_bytes) / static_cast<double>(pages);
    }
    memcpy_s[k] = Median(copy_times);
  }
  (void)SetDiffIsaForTesting(best);

  std::printf("ftsync_diff_bench: %zu pages of %zu bytes, %d reps (median); kernels: best %s\n",
              pages, kPage, reps, DiffIsaName(best));
  auto header = [&](const char* title) {
    std::printf("\n%-28s", title);
    for (size_t k = 0; k < ns; ++k) std::printf(" %10s", kScenarios[k].name);
    std::printf("\n");
  };
  header("time / memcpy time");
  std::printf("%-28s", "memcpy (ns/page)");
  for (size_t k = 0; k < ns; ++k) std::printf(" %10.0f", memcpy_s[k] / pages * 1e9);
  std::printf("\n%-28s", "memcpy (GB/s)");
  for (size_t k = 0; k < ns; ++k) std::printf(" %10.2f", GBps(pages * kPage, memcpy_s[k]));
  std::printf("\n");
  for (size_t c = 0; c < configs.size(); ++c) {
    std::printf("%-28s", configs[c].name.c_str());
    for (size_t k = 0; k < ns; ++k) std::printf(" %10.2f", ratio[c][k]);
    std::printf("\n");
  }
  header("encoded bytes / page");
  std::printf("%-28s", "whole page (Remus)");
  for (size_t k = 0; k < ns; ++k) std::printf(" %10zu", kPage);
  std::printf("\n");
  for (size_t c = 0; c < configs.size(); ++c) {
    if (!configs[c].has_size) continue;
    std::printf("%-28s", configs[c].name.c_str());
    for (size_t k = 0; k < ns; ++k) std::printf(" %10.1f", bytes[c][k]);
    std::printf("\n");
  }
  std::printf("%-28s", "runs-varint gap2 (computed)");
  for (size_t k = 0; k < ns; ++k) std::printf(" %10.1f", varint_bytes[k]);
  std::printf("\n");
  EpochTable(pages, reps);
  std::printf("\n(checksum %llu)\n", static_cast<unsigned long long>(g_checksum & 0xFFFF));
  return 0;
}

}  // namespace ftsync::bench

int main(int argc, char** argv) { return ftsync::bench::Main(argc, argv); }
