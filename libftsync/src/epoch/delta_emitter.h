// Sends one epoch's staged dirty pages as PAGE_DELTA entries where the
// shadow store holds the page's previous version, and as PAGE_DATA
// otherwise (stream-format.md). The Checkpointer's encoding path, kept
// apart so that bench/diff measures exactly this code.
#ifndef FTSYNC_SRC_EPOCH_DELTA_EMITTER_H_
#define FTSYNC_SRC_EPOCH_DELTA_EMITTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "diff/shadow_store.h"
#include "ftsync/dirty_bitmap.h"
#include "ftsync/status.h"
#include "stream/record_writer.h"
#include "stream/records.h"

namespace ftsync::internal {

struct DeltaEmitStats {
  uint64_t delta_pages = 0;  // sent as PAGE_DELTA entries
  uint64_t same_skipped = 0; // unchanged pages of `skip_same` not sent
  uint64_t encode_ns = 0;    // inside ShadowStore::Encode
};

class DeltaEmitter {
 public:
  // Runs one record write; the Checkpointer serialises it with heartbeats.
  using WriteFn = std::function<Status(const std::function<Status(RecordWriter&)>&)>;

  // `batch_pages`: most frames per PAGE_DATA record (>= 1).
  explicit DeltaEmitter(size_t batch_pages);

  // Encodes frames `pfns`, whose 4 KiB contents are back to back at
  // `data`, as epoch `epoch` against `store` (which records them as what the
  // backup will hold) and writes the records through `write`. On error the
  // store may already describe pages that never reached the backup: the
  // caller must Clear() it (the session is over anyway).
  //
  // `skip_same` (may be null; size at least every pfn + 1): frames in it
  // whose contents equal the version the store holds (a SAME delta) are not
  // written at all, and are appended to `skipped` (required with
  // skip_same). The caller uses it for frames the backup already receives
  // in this epoch by other means (speculative copies named by the epoch),
  // so that an unchanged one costs nothing. Frames not written do not count
  // toward EPOCH_COMMIT's `pages`.
  Status Emit(ShadowStore* store, uint64_t epoch, std::span<const uint64_t> pfns,
              const uint8_t* data, const WriteFn& write, DeltaEmitStats* stats,
              const DirtyBitmap* skip_same = nullptr, std::vector<uint64_t>* skipped = nullptr);

 private:
  size_t batch_;
  PageDeltaBuilder deltas_;
  std::vector<uint64_t> whole_pfns_;
  std::vector<uint8_t> whole_data_;
  std::unique_ptr<uint8_t[]> out_;
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_EPOCH_DELTA_EMITTER_H_
