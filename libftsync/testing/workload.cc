#include "testing/workload.h"

#include <algorithm>
#include <numeric>
#include <unordered_set>

namespace ftsync::testing {
namespace {

struct NamedKind {
  WorkloadKind kind;
  const char* name;
};
constexpr NamedKind kKinds[] = {
    {WorkloadKind::kSequentialWriter, "sequential"},
    {WorkloadKind::kHotPages, "hot"},
    {WorkloadKind::kSparseRandom, "sparse"},
    {WorkloadKind::kSubPageScribbles, "scribble"},
    {WorkloadKind::kZeroPages, "zero"},
    {WorkloadKind::kMixed, "mixed"},
};

}  // namespace

std::string WorkloadName(WorkloadKind kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "unknown";
}

Result<WorkloadKind> ParseWorkloadKind(std::string_view name) {
  for (const auto& k : kKinds)
    if (name == k.name) return k.kind;
  return Status(Errc::kInvalidArgument,
                "unknown workload '" + std::string(name) +
                    "' (expected sequential, hot, sparse, scribble, zero or mixed)");
}

std::vector<WorkloadKind> AllWorkloadKinds() {
  std::vector<WorkloadKind> all;
  for (const auto& k : kKinds) all.push_back(k.kind);
  return all;
}

Workload::Workload(WorkloadKind kind, uint64_t seed, WorkloadParams params)
    : kind_(kind), params_(params), rng_(seed) {}

// splitmix64.
uint64_t Workload::Next() {
  uint64_t z = (rng_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t Workload::Below(uint64_t n) {
  return uint64_t((static_cast<unsigned __int128>(Next()) * n) >> 64);
}

std::vector<uint64_t> Workload::DistinctFrames(uint64_t count, uint64_t frames) {
  count = std::min(count, frames);
  std::vector<uint64_t> out;
  out.reserve(count);
  if (count * 2 <= frames) {
    std::unordered_set<uint64_t> seen;
    while (out.size() < count) {
      uint64_t pfn = Below(frames);
      if (seen.insert(pfn).second) out.push_back(pfn);
    }
  } else {
    std::vector<uint64_t> all(frames);
    std::iota(all.begin(), all.end(), 0);
    for (uint64_t i = 0; i < count; ++i) {
      std::swap(all[i], all[i + Below(frames - i)]);
      out.push_back(all[i]);
    }
  }
  return out;
}

Status Workload::Setup(uint64_t frames) {
  if (frames == 0) return Status(Errc::kInvalidArgument, "workload: domain has no frames");
  frames_ = frames;
  cursor_ = Below(frames);
  hot_set_ = DistinctFrames(std::max<uint64_t>(1, frames * params_.hot_percent / 100), frames);
  std::sort(hot_set_.begin(), hot_set_.end());
  return Status::OK();
}

Status Workload::WriteOne(FakeDomain* d, WorkloadKind kind, uint64_t pfn) {
  const size_t page = d->PageSize();
  size_t offset = 0;
  size_t len = page;
  bool zeroed = false;
  buf_.resize(page);
  auto random_bytes = [&](size_t n) {
    for (size_t i = 0; i < n; i += 8) {
      uint64_t v = Next();
      for (size_t b = 0; b < 8 && i + b < n; ++b) buf_[i + b] = uint8_t(v >> (8 * b));
    }
  };
  switch (kind) {
    case WorkloadKind::kHotPages: {
      size_t lo = std::min<size_t>(8, page);
      size_t hi = std::max(lo, page / 2);
      len = lo + Below(hi - lo + 1);
      offset = Below(page - len + 1);
      random_bytes(len);
      break;
    }
    case WorkloadKind::kSubPageScribbles: {
      len = 1 + Below(std::min(params_.max_scribble, page));
      offset = Below(page - len + 1);
      // XOR with a non-zero byte, so every byte written really changes.
      std::span<const uint8_t> old = d->Frame(pfn);
      for (size_t i = 0; i < len; ++i) {
        uint8_t x = uint8_t(Next());
        buf_[i] = old[offset + i] ^ (x == 0 ? 0x5A : x);
      }
      break;
    }
    case WorkloadKind::kZeroPages:
      if (Below(100) < params_.refill_percent) {
        random_bytes(page);
      } else {
        std::fill(buf_.begin(), buf_.end(), 0);
        zeroed = true;
      }
      break;
    default:  // sequential, sparse: a whole page of new bytes
      random_bytes(page);
      break;
  }
  FTSYNC_RETURN_IF_ERROR(d->Write(pfn, offset, std::span<const uint8_t>(buf_.data(), len)));
  last_.push_back({pfn, offset, len, zeroed});
  return Status::OK();
}

Status Workload::Step(FakeDomain* d) {
  if (d == nullptr) return Status(Errc::kInvalidArgument, "workload: null domain");
  if (params_.hot_percent == 0 || params_.hot_percent > 100 ||
      params_.cold_percent > 100 || params_.refill_percent > 100 ||
      params_.max_scribble == 0)
    return Status(Errc::kInvalidArgument,
                  "workload " + WorkloadName(kind_) + ": bad params");
  if (frames_ == 0) {
    FTSYNC_RETURN_IF_ERROR(Setup(d->FrameCount()));
  } else if (d->FrameCount() != frames_) {
    return Status(Errc::kInvalidArgument,
                  "workload " + WorkloadName(kind_) + ": domain has " +
                      std::to_string(d->FrameCount()) + " frames, first step saw " +
                      std::to_string(frames_));
  }
  last_.clear();
  ++steps_;
  const uint64_t n = params_.writes_per_step;

  auto next_sequential = [&] {
    uint64_t pfn = cursor_;
    cursor_ = (cursor_ + 1) % frames_;
    return pfn;
  };
  auto next_hot = [&] {
    if (Below(100) < params_.cold_percent) return Below(frames_);
    return hot_set_[Below(hot_set_.size())];
  };

  switch (kind_) {
    case WorkloadKind::kSequentialWriter:
      for (uint64_t i = 0; i < n; ++i)
        FTSYNC_RETURN_IF_ERROR(WriteOne(d, kind_, next_sequential()));
      break;
    case WorkloadKind::kHotPages:
      for (uint64_t i = 0; i < n; ++i)
        FTSYNC_RETURN_IF_ERROR(WriteOne(d, kind_, next_hot()));
      break;
    case WorkloadKind::kSparseRandom:
    case WorkloadKind::kSubPageScribbles:
    case WorkloadKind::kZeroPages:
      for (uint64_t pfn : DistinctFrames(n, frames_))
        FTSYNC_RETURN_IF_ERROR(WriteOne(d, kind_, pfn));
      break;
    case WorkloadKind::kMixed:
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t r = Below(100);
        if (r < 35) {
          FTSYNC_RETURN_IF_ERROR(WriteOne(d, WorkloadKind::kHotPages, next_hot()));
        } else if (r < 60) {
          FTSYNC_RETURN_IF_ERROR(
              WriteOne(d, WorkloadKind::kSubPageScribbles, Below(frames_)));
        } else if (r < 75) {
          FTSYNC_RETURN_IF_ERROR(WriteOne(d, WorkloadKind::kSparseRandom, Below(frames_)));
        } else if (r < 90) {
          FTSYNC_RETURN_IF_ERROR(
              WriteOne(d, WorkloadKind::kSequentialWriter, next_sequential()));
        } else {
          FTSYNC_RETURN_IF_ERROR(WriteOne(d, WorkloadKind::kZeroPages, Below(frames_)));
        }
      }
      break;
  }
  return Status::OK();
}

}  // namespace ftsync::testing
