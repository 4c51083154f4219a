#include "epoch/delta_emitter.h"

#include <cstring>

#include "stream/format.h"
#include "util/clock.h"

namespace ftsync::internal {

DeltaEmitter::DeltaEmitter(size_t batch_pages)
    : batch_(std::max<size_t>(1, std::min<size_t>(batch_pages, kPageDataMaxBytes / kPageDeltaPageSize))),
      whole_data_(batch_ * kPageDeltaPageSize),
      out_(new uint8_t[kMaxDeltaSize]) {}

Status DeltaEmitter::Emit(ShadowStore* store, uint64_t epoch, std::span<const uint64_t> pfns,
                          const uint8_t* data, const WriteFn& write, DeltaEmitStats* stats,
                          const DirtyBitmap* skip_same, std::vector<uint64_t>* skipped) {
  if (skip_same && !skipped) return Status(Errc::kInvalidArgument, "skip_same without a skipped list");
  constexpr size_t ps = kPageDeltaPageSize;
  deltas_.Clear();
  whole_pfns_.clear();
  auto flush_deltas = [&]() -> Status {
    if (deltas_.count() == 0) return Status::OK();
    Status s = write([&](RecordWriter& w) { return w.PageDelta(deltas_.body()); });
    deltas_.Clear();
    return s;
  };
  auto flush_whole = [&]() -> Status {
    if (whole_pfns_.empty()) return Status::OK();
    Status s = write([&](RecordWriter& w) { return w.PageData(whole_pfns_, whole_data_.data(), ps); });
    whole_pfns_.clear();
    return s;
  };
  std::span<uint8_t, kMaxDeltaSize> out(out_.get(), kMaxDeltaSize);
  for (size_t i = 0; i < pfns.size(); ++i) {
    const uint8_t* cur = data + i * ps;
    uint64_t t0 = MonotonicNs();
    ShadowEncoded r = store->Encode(pfns[i], cur, epoch, out);
    stats->encode_ns += MonotonicNs() - t0;
    if (r.hit && r.kind == DeltaKind::kSame && skip_same && skip_same->Test(pfns[i])) {
      skipped->push_back(pfns[i]);
      stats->same_skipped++;
    } else if (r.hit && r.kind != DeltaKind::kWhole) {
      // Bodies stay near PAGE_DATA's 4 MiB and within 1024 entries.
      if (deltas_.count() == kPageDeltaMaxCount ||
          deltas_.size() + kPageDeltaEntryHeader + r.size > kPageDataMaxBytes)
        FTSYNC_RETURN_IF_ERROR(flush_deltas());
      deltas_.Add(pfns[i], r.base_hash, std::span<const uint8_t>(out.data(), r.size));
      stats->delta_pages++;
    } else {
      std::memcpy(whole_data_.data() + whole_pfns_.size() * ps, cur, ps);
      whole_pfns_.push_back(pfns[i]);
      if (whole_pfns_.size() == batch_) FTSYNC_RETURN_IF_ERROR(flush_whole());
    }
  }
  FTSYNC_RETURN_IF_ERROR(flush_whole());
  return flush_deltas();
}

}  // namespace ftsync::internal
