// The set-associative shadow store (see shadow_store.h).
#include "diff/shadow_store.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#define XXH_INLINE_ALL  // short inputs: let the compiler inline XXH3's fast paths
#include <xxhash.h>

namespace ftsync::internal {
namespace {

constexpr uint64_t kEmpty = ~uint64_t{0};
constexpr size_t kMetaBytes = 4 * sizeof(uint64_t);  // tag, stamp, version, content hash
constexpr size_t kNotFound = ~size_t{0};
constexpr size_t kHugePage = size_t{2} << 20;
// Deltas up to this size (a few runs) are applied to the shadow copy instead
// of copying the page. Measured with ftsync_diff_bench on 8192 cold pages:
// applying a 1-byte change beats the page copy by about 10%; applying 60
// scattered runs loses to it by about 20%.
constexpr size_t kSmallDelta = 64;

inline uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Bytes allocated for `slots` entries of `entry` bytes: the mapping (whole
// pages) and the metadata arrays.
size_t Footprint(size_t slots, size_t entry, size_t page) {
  return RoundUp(slots * entry, page) + slots * kMetaBytes;
}

size_t EntryBytes(const ShadowOptions& o) {
  return o.mode == ShadowMode::kCopy ? kDiffPageSize
                                     : BlocksPerPage(o.delta.block_size) * sizeof(uint64_t);
}

}  // namespace

const char* ShadowModeName(ShadowMode m) {
  return m == ShadowMode::kCopy ? "copy" : "block-hash";
}

Result<std::unique_ptr<ShadowStore>> ShadowStore::Create(const ShadowOptions& options) {
  if (options.ways < 1 || options.ways > 64)
    return Status(Errc::kInvalidArgument,
                  "shadow store: ways " + std::to_string(options.ways) + " not in 1..64");
  const size_t entry = EntryBytes(options);
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t sets = options.memory_budget / (entry + kMetaBytes) / options.ways;
  while (sets > 0 && Footprint(sets * options.ways, entry, page) > options.memory_budget) --sets;
  if (sets == 0)
    return Status(Errc::kInvalidArgument,
                  "shadow store: a budget of " + std::to_string(options.memory_budget) +
                      " bytes holds fewer than " + std::to_string(options.ways) + " entries of " +
                      std::to_string(entry + kMetaBytes) + " bytes");
  const size_t data_bytes = RoundUp(sets * options.ways * entry, page);
  void* p = mmap(nullptr, data_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return Status::FromErrno(errno, "shadow store: mapping " + std::to_string(data_bytes) + " bytes");
  if (data_bytes >= kHugePage) (void)madvise(p, data_bytes, MADV_HUGEPAGE);  // best effort
  return std::unique_ptr<ShadowStore>(
      new ShadowStore(options, entry, sets, static_cast<uint8_t*>(p), data_bytes));
}

ShadowStore::ShadowStore(const ShadowOptions& options, size_t entry_bytes, size_t sets,
                         uint8_t* data, size_t data_bytes)
    : options_(options),
      entry_bytes_(entry_bytes),
      sets_(sets),
      ways_(options.ways),
      tags_(sets * options.ways, kEmpty),
      meta_(sets * options.ways, Meta{0, 0, 0}),
      data_(data),
      data_bytes_(data_bytes) {
  seed_ = options.hash_seed;
  if (options.mode == ShadowMode::kBlockHash && seed_ == 0) {
    std::random_device rd;
    seed_ = (uint64_t{rd()} << 32) | rd();
  }
}

ShadowStore::~ShadowStore() { munmap(data_, data_bytes_); }

size_t ShadowStore::memory_bytes() const { return data_bytes_ + capacity() * kMetaBytes; }

size_t ShadowStore::SetOf(uint64_t pfn) const {
  return static_cast<size_t>((static_cast<unsigned __int128>(Mix(pfn)) * sets_) >> 64);
}

size_t ShadowStore::Find(uint64_t pfn) const {
  const size_t first = SetOf(pfn) * ways_;
  for (size_t s = first; s < first + ways_; ++s)
    if (tags_[s] == pfn) return s;
  return kNotFound;
}

size_t ShadowStore::Victim(uint64_t pfn) {
  const size_t first = SetOf(pfn) * ways_;
  size_t victim = first;
  for (size_t s = first; s < first + ways_; ++s) {
    if (tags_[s] == kEmpty) return s;
    if (meta_[s].stamp < meta_[victim].stamp) victim = s;
  }
  ++stats_.evictions;
  return victim;
}

bool ShadowStore::Contains(uint64_t pfn) const { return pfn != kEmpty && Find(pfn) != kNotFound; }

size_t ShadowStore::size() const {
  size_t n = 0;
  for (uint64_t t : tags_) n += t != kEmpty;
  return n;
}

void ShadowStore::Invalidate(uint64_t pfn) {
  if (pfn == kEmpty) return;
  size_t s = Find(pfn);
  if (s != kNotFound) tags_[s] = kEmpty;
}

void ShadowStore::Clear() { std::fill(tags_.begin(), tags_.end(), kEmpty); }

void ShadowStore::HashBlocks(const uint8_t* page, uint64_t* hashes) const {
  const size_t bytes = BlockBytes(options_.delta.block_size);
  const size_t n = BlocksPerPage(options_.delta.block_size);
  for (size_t i = 0; i < n; ++i) hashes[i] = XXH3_64bits_withSeed(page + i * bytes, bytes, seed_);
}

ShadowEncoded ShadowStore::Encode(uint64_t pfn, const uint8_t* cur, uint64_t version,
                                  std::span<uint8_t, kMaxDeltaSize> out) {
  ++stats_.encodes;
  stats_.bytes_in += kDiffPageSize;
  // pfn ~0 is our empty marker; no guest has that frame, but stay correct:
  // such a page is simply never stored.
  size_t slot = pfn == kEmpty ? kNotFound : Find(pfn);
  ShadowEncoded r{DeltaKind::kWhole, 0, slot != kNotFound, 0, 0};
  uint64_t hashes[kMaskWords];

  if (r.hit) {
    ++stats_.hits;
    r.base_version = meta_[slot].version;
    r.base_hash = meta_[slot].content_hash;
    uint8_t* entry = Entry(slot);
    EncodedDelta d;
    if (options_.mode == ShadowMode::kCopy) {
      d = EncodePageDelta(entry, cur, options_.delta, out);
      // A small delta updates the copy cheaper than a page copy would (and
      // identically: on any doubt, copy).
      bool small = d.kind != DeltaKind::kWhole && d.size <= kSmallDelta;
      if (d.kind != DeltaKind::kSame &&
          (!small || !ApplyPageDelta(std::span<const uint8_t>(out.data(), d.size),
                                     std::span<uint8_t>(entry, kDiffPageSize))
                          .ok()))
        std::memcpy(entry, cur, kDiffPageSize);
    } else {
      HashBlocks(cur, hashes);
      const size_t n = BlocksPerPage(options_.delta.block_size);
      uint64_t mask = 0;
      for (size_t i = 0; i < n; ++i) {
        uint64_t old;
        std::memcpy(&old, entry + 8 * i, 8);
        mask |= static_cast<uint64_t>(old != hashes[i]) << i;
      }
      d = EncodeBlocksDelta(cur, mask, options_.delta.block_size, out);
      if (mask) std::memcpy(entry, hashes, entry_bytes_);
    }
    r.kind = d.kind;
    r.size = d.size;
  } else {
    out[0] = static_cast<uint8_t>(DeltaKind::kWhole);
    std::memcpy(out.data() + 1, cur, kDiffPageSize);
    r.size = kDeltaWholeSize;
    if (pfn != kEmpty) {
      slot = Victim(pfn);
      tags_[slot] = pfn;
      if (options_.mode == ShadowMode::kCopy) {
        std::memcpy(Entry(slot), cur, kDiffPageSize);
      } else {
        HashBlocks(cur, hashes);
        std::memcpy(Entry(slot), hashes, entry_bytes_);
      }
    }
  }
  if (slot != kNotFound) meta_[slot] = Meta{++clock_, version, PageContentHash(cur)};
  stats_.bytes_out += r.size;
  return r;
}

void ShadowStore::Record(uint64_t pfn, const uint8_t* cur, uint64_t version) {
  if (pfn == kEmpty) return;
  size_t slot = Find(pfn);
  if (slot == kNotFound) {
    slot = Victim(pfn);
    tags_[slot] = pfn;
  }
  if (options_.mode == ShadowMode::kCopy) {
    std::memcpy(Entry(slot), cur, kDiffPageSize);
  } else {
    uint64_t hashes[kMaskWords];
    HashBlocks(cur, hashes);
    std::memcpy(Entry(slot), hashes, entry_bytes_);
  }
  meta_[slot] = Meta{++clock_, version, PageContentHash(cur)};
}

uint64_t PageContentHash(const uint8_t* page) { return XXH3_64bits_withSeed(page, kDiffPageSize, 0); }

}  // namespace ftsync::internal
