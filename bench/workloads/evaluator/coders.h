// The sender side of each memory-sync configuration the workload benchmark
// compares: how one dirty page becomes bytes on the wire, with the state
// that configuration keeps (a shadow store, or the last-sent copy).
//
// Every configuration pays the same framing per page sent: the page's frame
// number (8 bytes, as in the stream's PAGE_DATA record); the encodings that
// do not delimit themselves (XOR+RLE, XBZRLE) add a 2-byte length. The
// Remus baseline sends the page as it is (8 + 4096 bytes).
//
// An epoch's output of one coder is one contiguous buffer of records
//   pfn u64 | [len u16] | encoding
// which the compressors (Compressor) compress as one block per epoch.
#ifndef FTSYNC_BENCH_WORKLOADS_EVALUATOR_CODERS_H_
#define FTSYNC_BENCH_WORKLOADS_EVALUATOR_CODERS_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "diff/page_delta.h"
#include "diff/shadow_store.h"
#include "ftsync/status.h"

namespace ftsync::wl {

inline constexpr size_t kPage = internal::kDiffPageSize;
inline constexpr size_t kPfnBytes = 8;
inline constexpr size_t kLenBytes = 2;
// Most bytes one record takes (pfn + length + a whole-page encoding).
inline constexpr size_t kMaxRecord = kPfnBytes + kLenBytes + internal::kMaxDeltaSize;

enum class RecordKind : uint8_t {
  kWhole,   // the page as it is (Remus baseline, or WHOLE delta)
  kDelta,   // ftsync's page delta (SAME/WHOLE/BLOCKS/RUNS)
  kXorRle,  // Remus XOR+RLE against the base
  kXbzrle,  // QEMU XBZRLE against the base
};

// One configuration's page encoder. Encode appends one record to `out` and
// returns its size. `base` is the page as the backup holds it (its version
// at the last send), or null when the sender's cache would not hold it:
// used only by coders that keep no state of their own (XOR+RLE, XBZRLE; the
// engine gives them exactly the hits and misses of a shadow store of the
// same budget and geometry, see engine.h). Null base: whole page.
class PageCoder {
 public:
  virtual ~PageCoder() = default;
  virtual RecordKind kind() const = 0;
  virtual size_t Encode(uint64_t pfn, const uint8_t* cur, const uint8_t* base, uint64_t version,
                        std::vector<uint8_t>* out) = 0;
  // Shadow store statistics (zero for stateless coders).
  virtual internal::ShadowStats shadow_stats() const { return {}; }
  virtual size_t shadow_memory() const { return 0; }
  // Whether the coder's shadow store holds `pfn` now (stateless: false).
  virtual bool Holds(uint64_t pfn) const { return false; }
};

// Remus: the whole page.
std::unique_ptr<PageCoder> MakeWholeCoder();
// Remus checkpoint compression: XOR+RLE against the base (whole page when
// it would not fit in a page).
std::unique_ptr<PageCoder> MakeXorRleCoder();
// QEMU's XBZRLE against the base (whole page when it would not fit).
std::unique_ptr<PageCoder> MakeXbzrleCoder();
// ftsync's shadow store (copy or block-hash mode, BLOCKS or RUNS deltas).
Result<std::unique_ptr<PageCoder>> MakeShadowCoder(const internal::ShadowOptions& options);

// Decodes one record (as written by a coder of `kind`) onto `page` (the
// backup's copy; `size` is what Encode returned). For the benchmark's own
// check that every configuration's bytes rebuild the primary's page.
Status DecodeRecord(RecordKind kind, const uint8_t* rec, size_t size, uint8_t* page);

// A block compressor applied to a coder's output of one epoch.
class Compressor {
 public:
  virtual ~Compressor() = default;
  // Compressed size of `in` (the output is kept in an internal buffer).
  virtual size_t Compress(const uint8_t* in, size_t n) = 0;
  // Decompresses what the last Compress produced and checks it equals `in`.
  virtual bool Check(const uint8_t* in, size_t n) = 0;
};
// "zlib-1", "zlib-6", "zstd-1", "zstd-3", "lz4".
Result<std::unique_ptr<Compressor>> MakeCompressor(const std::string& name);

}  // namespace ftsync::wl

#endif  // FTSYNC_BENCH_WORKLOADS_EVALUATOR_CODERS_H_
