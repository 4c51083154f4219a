#include "stream/compression.h"

#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <climits>

namespace ftsync::internal {
namespace {

Status C4(const std::string& what) { return Status(Errc::kCorruption, "[C4] " + what); }

int DefaultLevel(Codec c) { return c == Codec::kZlib ? 1 : 1; }

struct ZstdDctxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

}  // namespace

const char* CodecName(Codec c) {
  switch (c) {
    case Codec::kNone: return "none";
    case Codec::kZlib: return "zlib";
    case Codec::kZstd: return "zstd";
  }
  return "unknown";
}

bool IsWireCodec(uint8_t codec) { return codec == 1 || codec == 2; }

Status CheckCodecLevel(Codec c, int level) {
  int max = c == Codec::kZlib ? 9 : c == Codec::kZstd ? 19 : 0;
  if (level < 0 || level > max)
    return Status(Errc::kInvalidArgument, std::string("compression level ") + std::to_string(level) +
                                              " out of range 0.." + std::to_string(max) + " for " +
                                              CodecName(c));
  return Status::OK();
}

struct Compressor::State {
  z_stream z{};
  bool z_init = false;
  ZSTD_CCtx* zstd = nullptr;
  ~State() {
    if (z_init) deflateEnd(&z);
    if (zstd) ZSTD_freeCCtx(zstd);
  }
};

Result<std::unique_ptr<Compressor>> Compressor::Create(Codec codec, int level) {
  if (codec != Codec::kZlib && codec != Codec::kZstd)
    return Status(Errc::kInvalidArgument, std::string("no compressor for codec ") + CodecName(codec));
  FTSYNC_RETURN_IF_ERROR(CheckCodecLevel(codec, level));
  if (level == 0) level = DefaultLevel(codec);
  std::unique_ptr<Compressor> c(new Compressor(codec, level));
  c->state_ = std::make_unique<State>();
  if (codec == Codec::kZlib) {
    if (deflateInit(&c->state_->z, level) != Z_OK)
      return Status(Errc::kInternal, "zlib: deflateInit failed");
    c->state_->z_init = true;
  } else {
    c->state_->zstd = ZSTD_createCCtx();
    if (!c->state_->zstd) return Status(Errc::kNoSpace, "zstd: cannot create a context");
    ZSTD_CCtx_setParameter(c->state_->zstd, ZSTD_c_compressionLevel, level);
  }
  return c;
}

Compressor::Compressor(Codec codec, int level) : codec_(codec), level_(level) {}
Compressor::~Compressor() = default;

Result<bool> Compressor::Compress(std::span<const uint8_t> in, size_t limit, std::vector<uint8_t>* out) {
  if (limit <= 1 || in.empty()) return false;
  out->resize(limit - 1);  // must end strictly shorter than limit
  if (codec_ == Codec::kZlib) {
    z_stream& z = state_->z;
    if (deflateReset(&z) != Z_OK) return Status(Errc::kInternal, "zlib: deflateReset failed");
    if (in.size() > UINT_MAX) return false;  // bodies are at most 64 MiB
    z.next_in = const_cast<Bytef*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = out->data();
    z.avail_out = static_cast<uInt>(std::min<size_t>(out->size(), UINT_MAX));
    int r = deflate(&z, Z_FINISH);
    if (r == Z_OK || r == Z_BUF_ERROR) return false;  // output full: not smaller
    if (r != Z_STREAM_END) return Status(Errc::kInternal, "zlib: deflate failed (" + std::to_string(r) + ")");
    out->resize(z.total_out);
    return true;
  }
  size_t n = ZSTD_compress2(state_->zstd, out->data(), out->size(), in.data(), in.size());
  if (ZSTD_isError(n)) {
    if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall) return false;
    return Status(Errc::kInternal, std::string("zstd: ") + ZSTD_getErrorName(n));
  }
  out->resize(n);
  return true;
}

Status Decompress(uint8_t codec, std::span<const uint8_t> in, std::span<uint8_t> out) {
  if (codec == static_cast<uint8_t>(Codec::kZlib)) {
    z_stream z{};
    if (inflateInit(&z) != Z_OK) return Status(Errc::kNoSpace, "zlib: inflateInit failed");
    if (in.size() > UINT_MAX || out.size() > UINT_MAX) {
      inflateEnd(&z);
      return C4("zlib: body too large");
    }
    z.next_in = const_cast<Bytef*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    int r = inflate(&z, Z_FINISH);
    uLong produced = z.total_out;
    uInt left_in = z.avail_in;
    inflateEnd(&z);
    if (r == Z_STREAM_END) {
      if (produced != out.size())
        return C4("zlib data decompresses to " + std::to_string(produced) + " bytes, expected " +
                  std::to_string(out.size()));
      if (left_in != 0) return C4(std::to_string(left_in) + " bytes after the end of the zlib stream");
      return Status::OK();
    }
    if (r == Z_BUF_ERROR && z.avail_out == 0 && left_in > 0)
      return C4("zlib data decompresses to more than " + std::to_string(out.size()) + " bytes");
    if (r == Z_BUF_ERROR) return C4("zlib data ends before the end of its stream");
    return C4(std::string("zlib: ") + (z.msg ? z.msg : "inflate failed"));
  }
  if (codec == static_cast<uint8_t>(Codec::kZstd)) {
    size_t frame = ZSTD_findFrameCompressedSize(in.data(), in.size());
    if (ZSTD_isError(frame)) return C4(std::string("zstd: ") + ZSTD_getErrorName(frame));
    if (frame != in.size())
      return C4(std::to_string(in.size() - frame) + " bytes after the end of the zstd frame");
    thread_local std::unique_ptr<ZSTD_DCtx, ZstdDctxDeleter> dctx;
    if (!dctx) {
      dctx.reset(ZSTD_createDCtx());
      if (!dctx) return Status(Errc::kNoSpace, "zstd: cannot create a context");
      ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
    }
    size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), in.data(), in.size());
    if (ZSTD_isError(n)) {
      if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
        return C4("zstd data decompresses to more than " + std::to_string(out.size()) + " bytes");
      return C4(std::string("zstd: ") + ZSTD_getErrorName(n));
    }
    if (n != out.size())
      return C4("zstd data decompresses to " + std::to_string(n) + " bytes, expected " +
                std::to_string(out.size()));
    return Status::OK();
  }
  return Status(Errc::kCorruption, "[C1] unknown codec " + std::to_string(codec));
}

}  // namespace ftsync::internal
