// The primary's memory of what the backup holds: for each page recently
// sent, either a copy of the version sent (copy mode) or XXH3-64 hashes of
// its blocks (block-hash mode), so the next send of that page can be a delta.
//
// Memory is bounded: a set-associative cache (8 ways by default, LRU within
// a set) sized from a byte budget at creation and never grown. A page not in
// the store (never sent, or evicted) is sent WHOLE and enters the store. The
// entries live in one anonymous mapping with transparent huge pages advised:
// entries are touched in guest-page order, scattered over the mapping, and
// with 4 KiB pages nearly every lookup would miss the TLB (costly in a VM).
//
//   mode        per page kept                          finds changes by
//   kCopy       4096 B + 32 B metadata                 comparing bytes (vector
//                                                      kernels); BLOCKS or RUNS
//   kBlockHash  8 B per block + 32 B: 544 B at 64-byte hashing the new page's
//               blocks, 288 B at 128, 160 B at 256     blocks; BLOCKS only
//
// Both modes also keep the XXH3-64 (seed 0) of the whole page as sent
// (PageContentHash): the `base` that the stream's PAGE_DELTA entries name
// and the backup checks, so a hash-mode collision or any disagreement
// between the store and the backup is caught by the backup, not applied.
//
// Hash mode trades memory for CPU and for certainty: two different blocks
// with equal hashes (probability about 2^-64 per changed block; the seed is
// random per store unless set, so a guest cannot aim at it) would leave that
// block stale on the backup. The paper's system made the same trade with MD5.
//
// The store must describe the backup: callers Encode a page only when its
// encoding will reach the backup in the same epoch, and Clear() the store
// when that cannot be promised any more (a failed epoch, a new backup).
// Not thread-safe: one store per sending thread.
#ifndef FTSYNC_SRC_DIFF_SHADOW_STORE_H_
#define FTSYNC_SRC_DIFF_SHADOW_STORE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "diff/page_delta.h"
#include "ftsync/status.h"

namespace ftsync::internal {

enum class ShadowMode { kCopy, kBlockHash };

const char* ShadowModeName(ShadowMode m);

struct ShadowOptions {
  ShadowMode mode = ShadowMode::kCopy;
  // Upper bound on the bytes the store allocates (entries and their
  // metadata). 32 MiB keeps about 8100 pages in copy mode (Remus kept 8192).
  size_t memory_budget = size_t{32} << 20;
  // Associativity: 1..64. More ways, fewer conflict evictions, longer lookups.
  size_t ways = 8;
  // Copy mode: the delta encoding. Hash mode: block_size only (BLOCKS).
  DeltaOptions delta;
  // Hash mode: the XXH3 seed; 0 picks a random one.
  uint64_t hash_seed = 0;
};

struct ShadowStats {
  uint64_t encodes = 0;    // calls of Encode
  uint64_t hits = 0;       // the page was in the store
  uint64_t evictions = 0;  // a valid entry was replaced
  uint64_t bytes_in = 0;   // kDiffPageSize per Encode
  uint64_t bytes_out = 0;  // sum of encoded sizes
};

// The result of ShadowStore::Encode.
struct ShadowEncoded {
  DeltaKind kind;
  size_t size;            // bytes written to `out`
  bool hit;               // the page was in the store (else kind is kWhole)
  uint64_t base_version;  // on a hit: the version tag the delta applies to
  uint64_t base_hash;     // on a hit: PageContentHash of the version it applies to
};

// XXH3-64, seed 0, of a kDiffPageSize page: the base identity of PAGE_DELTA.
uint64_t PageContentHash(const uint8_t* page);

class ShadowStore {
 public:
  // kInvalidArgument if ways is not in 1..64 or the budget holds fewer
  // than `ways` pages of the chosen mode; kNoSpace (or the errno's code) if
  // the memory cannot be mapped.
  static Result<std::unique_ptr<ShadowStore>> Create(const ShadowOptions& options);
  ~ShadowStore();
  ShadowStore(const ShadowStore&) = delete;
  ShadowStore& operator=(const ShadowStore&) = delete;

  // Encodes page `pfn`, now holding `cur` (kDiffPageSize bytes), for
  // sending: a delta against the stored version if there is one, else
  // WHOLE. Then records `cur` (tagged `version`, e.g. the epoch number) as
  // the version the backup will hold, evicting the set's least recently
  // used entry if needed. Writes at most kMaxDeltaSize bytes to `out`.
  ShadowEncoded Encode(uint64_t pfn, const uint8_t* cur, uint64_t version,
                       std::span<uint8_t, kMaxDeltaSize> out);

  // Records `cur` as the version of `pfn` the backup holds (sent whole by
  // other means), without encoding anything.
  void Record(uint64_t pfn, const uint8_t* cur, uint64_t version);

  // Forgets one page (its next Encode sends it WHOLE).
  void Invalidate(uint64_t pfn);
  // Forgets every page.
  void Clear();

  bool Contains(uint64_t pfn) const;
  // Pages currently held, and the most the store can hold.
  size_t size() const;
  size_t capacity() const { return sets_ * ways_; }
  // Bytes allocated for entries and metadata; <= options.memory_budget.
  size_t memory_bytes() const;
  const ShadowStats& stats() const { return stats_; }
  const ShadowOptions& options() const { return options_; }

 private:
  struct Meta {
    uint64_t stamp;    // last use, for LRU
    uint64_t version;  // caller's version tag
    uint64_t content_hash;  // PageContentHash of the version held
  };

  ShadowStore(const ShadowOptions& options, size_t entry_bytes, size_t sets, uint8_t* data,
              size_t data_bytes);

  size_t SetOf(uint64_t pfn) const;
  // Slot index holding pfn, or SIZE_MAX.
  size_t Find(uint64_t pfn) const;
  // Slot for a new entry in pfn's set (an empty or the LRU slot).
  size_t Victim(uint64_t pfn);
  uint8_t* Entry(size_t slot) { return data_ + slot * entry_bytes_; }
  void HashBlocks(const uint8_t* page, uint64_t* hashes) const;

  ShadowOptions options_;
  size_t entry_bytes_;  // page copy or block hashes
  size_t sets_;
  size_t ways_;
  uint64_t seed_ = 0;
  uint64_t clock_ = 0;         // LRU stamps
  std::vector<uint64_t> tags_;  // pfn, or kEmpty; a set's tags share cache lines
  std::vector<Meta> meta_;
  uint8_t* data_;      // entries: an anonymous mapping (huge pages advised)
  size_t data_bytes_;  // its length, a multiple of the page size
  ShadowStats stats_;
};

}  // namespace ftsync::internal

#endif  // FTSYNC_SRC_DIFF_SHADOW_STORE_H_
