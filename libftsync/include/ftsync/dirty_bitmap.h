// ftsync: a set of guest frame numbers, one bit per frame.
#ifndef FTSYNC_DIRTY_BITMAP_H_
#define FTSYNC_DIRTY_BITMAP_H_

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <vector>

namespace ftsync {

class DirtyBitmap {
 public:
  DirtyBitmap() = default;
  // A bitmap of `frames` bits, all clear.
  explicit DirtyBitmap(uint64_t frames) { Resize(frames); }

  // Sets the size to `frames` bits and clears every bit.
  void Resize(uint64_t frames) {
    frames_ = frames;
    words_.assign((frames + 63) / 64, 0);
  }
  uint64_t size() const { return frames_; }

  // Requires pfn < size().
  void Set(uint64_t pfn) { words_[pfn >> 6] |= uint64_t{1} << (pfn & 63); }
  void Clear(uint64_t pfn) { words_[pfn >> 6] &= ~(uint64_t{1} << (pfn & 63)); }
  bool Test(uint64_t pfn) const { return (words_[pfn >> 6] >> (pfn & 63)) & 1; }
  void ClearAll() { std::fill(words_.begin(), words_.end(), 0); }

  // Number of set bits.
  uint64_t Count() const {
    uint64_t n = 0;
    for (uint64_t w : words_) n += __builtin_popcountll(w);
    return n;
  }
  // Sets every bit that is set in `other`. Requires equal sizes.
  void Merge(const DirtyBitmap& other) {
    for (size_t i = 0; i < words_.size() && i < other.words_.size(); ++i)
      words_[i] |= other.words_[i];
  }
  // Appends the set frame numbers, ascending, to `out`.
  void AppendSetBits(std::vector<uint64_t>* out) const {
    for (size_t i = 0; i < words_.size(); ++i) {
      uint64_t w = words_[i];
      while (w) {
        out->push_back(i * 64 + __builtin_ctzll(w));
        w &= w - 1;
      }
    }
  }
  // Raw 64-bit words, bit (pfn & 63) of word (pfn >> 6); for backends that
  // fill the bitmap in bulk (Xen's log-dirty bitmap has this layout).
  uint64_t* words() { return words_.data(); }
  const uint64_t* words() const { return words_.data(); }
  size_t word_count() const { return words_.size(); }

  bool operator==(const DirtyBitmap& o) const {
    return frames_ == o.frames_ && words_ == o.words_;
  }

 private:
  uint64_t frames_ = 0;
  std::vector<uint64_t> words_;
};

}  // namespace ftsync

#endif  // FTSYNC_DIRTY_BITMAP_H_
