// Page coders and epoch compressors of the workload benchmark (coders.h).
#include "coders.h"

#include <lz4.h>
#include <zlib.h>
#include <zstd.h>

#include <cstring>
#include <span>

#include "diff/baseline_codecs.h"

namespace ftsync::wl {
namespace {
using namespace internal;

uint8_t* Grow(std::vector<uint8_t>* out, size_t n) {
  const size_t at = out->size();
  out->resize(at + n);
  return out->data() + at;
}

void PutPfn(uint8_t* p, uint64_t pfn) { std::memcpy(p, &pfn, kPfnBytes); }

class WholeCoder : public PageCoder {
 public:
  RecordKind kind() const override { return RecordKind::kWhole; }
  size_t Encode(uint64_t pfn, const uint8_t* cur, const uint8_t*, uint64_t,
                std::vector<uint8_t>* out) override {
    uint8_t* p = Grow(out, kPfnBytes + kPage);
    PutPfn(p, pfn);
    std::memcpy(p + kPfnBytes, cur, kPage);
    return kPfnBytes + kPage;
  }
};

// XOR+RLE and XBZRLE share the framing: pfn, u16 length, encoding; a length
// of 0xFFFF marks a whole page (the encoding did not fit).
template <auto kEncode>
class BaselineCoder : public PageCoder {
 public:
  explicit BaselineCoder(RecordKind k) : kind_(k) {}
  RecordKind kind() const override { return kind_; }
  size_t Encode(uint64_t pfn, const uint8_t* cur, const uint8_t* base, uint64_t,
                std::vector<uint8_t>* out) override {
    const size_t at = out->size();
    uint8_t* p = Grow(out, kPfnBytes + kLenBytes + kPage);
    PutPfn(p, pfn);
    std::optional<size_t> n;
    if (base) n = kEncode(base, cur, std::span<uint8_t>(p + kPfnBytes + kLenBytes, kPage));
    uint16_t len;
    if (n && *n < kPage) {
      len = static_cast<uint16_t>(*n);
    } else {
      len = 0xFFFF;
      std::memcpy(p + kPfnBytes + kLenBytes, cur, kPage);
    }
    std::memcpy(p + kPfnBytes, &len, kLenBytes);
    const size_t size = kPfnBytes + kLenBytes + (len == 0xFFFF ? kPage : len);
    out->resize(at + size);
    return size;
  }

 private:
  RecordKind kind_;
};

class ShadowCoder : public PageCoder {
 public:
  explicit ShadowCoder(std::unique_ptr<ShadowStore> s) : store_(std::move(s)) {}
  RecordKind kind() const override { return RecordKind::kDelta; }
  size_t Encode(uint64_t pfn, const uint8_t* cur, const uint8_t*, uint64_t version,
                std::vector<uint8_t>* out) override {
    const size_t at = out->size();
    uint8_t* p = Grow(out, kPfnBytes + kMaxDeltaSize);
    PutPfn(p, pfn);
    ShadowEncoded e =
        store_->Encode(pfn, cur, version, std::span<uint8_t, kMaxDeltaSize>(p + kPfnBytes, kMaxDeltaSize));
    out->resize(at + kPfnBytes + e.size);
    return kPfnBytes + e.size;
  }
  ShadowStats shadow_stats() const override { return store_->stats(); }
  size_t shadow_memory() const override { return store_->memory_bytes(); }
  bool Holds(uint64_t pfn) const override { return store_->Contains(pfn); }

 private:
  std::unique_ptr<ShadowStore> store_;
};

class ZlibCompressor : public Compressor {
 public:
  explicit ZlibCompressor(int level) : level_(level) {}
  size_t Compress(const uint8_t* in, size_t n) override {
    uLongf len = compressBound(n);
    buf_.resize(len);
    if (compress2(buf_.data(), &len, in, n, level_) != Z_OK) return n;
    size_ = len;
    return len;
  }
  bool Check(const uint8_t* in, size_t n) override {
    std::vector<uint8_t> back(n);
    uLongf len = n;
    return uncompress(back.data(), &len, buf_.data(), size_) == Z_OK && len == n &&
           std::memcmp(back.data(), in, n) == 0;
  }

 private:
  int level_;
  size_t size_ = 0;
  std::vector<uint8_t> buf_;
};

class ZstdCompressor : public Compressor {
 public:
  explicit ZstdCompressor(int level) : level_(level), cctx_(ZSTD_createCCtx()) {}
  ~ZstdCompressor() override { ZSTD_freeCCtx(cctx_); }
  size_t Compress(const uint8_t* in, size_t n) override {
    buf_.resize(ZSTD_compressBound(n));
    size_t r = ZSTD_compressCCtx(cctx_, buf_.data(), buf_.size(), in, n, level_);
    if (ZSTD_isError(r)) return n;
    size_ = r;
    return r;
  }
  bool Check(const uint8_t* in, size_t n) override {
    std::vector<uint8_t> back(n);
    size_t r = ZSTD_decompress(back.data(), n, buf_.data(), size_);
    return !ZSTD_isError(r) && r == n && std::memcmp(back.data(), in, n) == 0;
  }

 private:
  int level_;
  ZSTD_CCtx* cctx_;
  size_t size_ = 0;
  std::vector<uint8_t> buf_;
};

class Lz4Compressor : public Compressor {
 public:
  size_t Compress(const uint8_t* in, size_t n) override {
    buf_.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(n))));
    int r = LZ4_compress_default(reinterpret_cast<const char*>(in), reinterpret_cast<char*>(buf_.data()),
                                 static_cast<int>(n), static_cast<int>(buf_.size()));
    if (r <= 0) return n;
    size_ = static_cast<size_t>(r);
    return size_;
  }
  bool Check(const uint8_t* in, size_t n) override {
    std::vector<uint8_t> back(n);
    int r = LZ4_decompress_safe(reinterpret_cast<const char*>(buf_.data()), reinterpret_cast<char*>(back.data()),
                                static_cast<int>(size_), static_cast<int>(n));
    return r == static_cast<int>(n) && std::memcmp(back.data(), in, n) == 0;
  }

 private:
  size_t size_ = 0;
  std::vector<uint8_t> buf_;
};

}  // namespace

std::unique_ptr<PageCoder> MakeWholeCoder() { return std::make_unique<WholeCoder>(); }
std::unique_ptr<PageCoder> MakeXorRleCoder() {
  return std::make_unique<BaselineCoder<&XorRleEncode>>(RecordKind::kXorRle);
}
std::unique_ptr<PageCoder> MakeXbzrleCoder() {
  return std::make_unique<BaselineCoder<&XbzrleEncode>>(RecordKind::kXbzrle);
}

Result<std::unique_ptr<PageCoder>> MakeShadowCoder(const ShadowOptions& options) {
  auto s = ShadowStore::Create(options);
  if (!s.ok()) return s.status();
  return std::unique_ptr<PageCoder>(new ShadowCoder(std::move(s).value()));
}

Status DecodeRecord(RecordKind kind, const uint8_t* rec, size_t size, uint8_t* page) {
  if (size < kPfnBytes) return Status(Errc::kCorruption, "record shorter than its pfn");
  const uint8_t* body = rec + kPfnBytes;
  size_t n = size - kPfnBytes;
  std::span<uint8_t> pg(page, kPage);
  switch (kind) {
    case RecordKind::kWhole:
      if (n != kPage) return Status(Errc::kCorruption, "whole-page record of " + std::to_string(n) + " bytes");
      std::memcpy(page, body, kPage);
      return Status::OK();
    case RecordKind::kDelta:
      return ApplyPageDelta(std::span<const uint8_t>(body, n), pg);
    case RecordKind::kXorRle:
    case RecordKind::kXbzrle: {
      if (n < kLenBytes) return Status(Errc::kCorruption, "record without its length");
      uint16_t len;
      std::memcpy(&len, body, kLenBytes);
      body += kLenBytes;
      n -= kLenBytes;
      if (len == 0xFFFF) {
        if (n != kPage) return Status(Errc::kCorruption, "whole-page fallback of wrong size");
        std::memcpy(page, body, kPage);
        return Status::OK();
      }
      if (n != len) return Status(Errc::kCorruption, "record length mismatch");
      std::span<const uint8_t> in(body, n);
      return kind == RecordKind::kXorRle ? XorRleDecode(in, pg) : XbzrleDecode(in, pg);
    }
  }
  return Status(Errc::kCorruption, "unknown record kind");
}

Result<std::unique_ptr<Compressor>> MakeCompressor(const std::string& name) {
  if (name == "zlib-1") return std::unique_ptr<Compressor>(new ZlibCompressor(1));
  if (name == "zlib-6") return std::unique_ptr<Compressor>(new ZlibCompressor(6));
  if (name == "zstd-1") return std::unique_ptr<Compressor>(new ZstdCompressor(1));
  if (name == "zstd-3") return std::unique_ptr<Compressor>(new ZstdCompressor(3));
  if (name == "lz4") return std::unique_ptr<Compressor>(new Lz4Compressor());
  return Status(Errc::kInvalidArgument, "unknown compressor " + name);
}

}  // namespace ftsync::wl
