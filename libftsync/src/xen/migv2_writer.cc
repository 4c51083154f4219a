// ftsync: Xen save-image writer (format in migv2_writer.h).
#include "xen/migv2_writer.h"

#include <cstring>
#include <string>
#include <vector>

namespace ftsync::xen {
namespace {

constexpr size_t kPage = 4096;
// 32 bytes; the array holds one more for the literal's terminator.
constexpr char kXlMagic[33] = "Xen saved domain, xl format\n \0 \r";

class Emitter {
 public:
  explicit Emitter(const ByteWriter& out) : out_(out) {}
  Status Raw(const void* p, size_t n) {
    bytes_ += n;
    return out_(p, n);
  }
  Status Le32(uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    return Raw(b, 4);
  }
  Status Be32(uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
    return Raw(b, 4);
  }
  Status Be64(uint64_t v) {
    FTSYNC_RETURN_IF_ERROR(Be32(static_cast<uint32_t>(v >> 32)));
    return Be32(static_cast<uint32_t>(v));
  }
  // One record: header, body pieces, padding to 8.
  Status Record(uint32_t type, std::initializer_list<std::pair<const void*, size_t>> parts) {
    size_t len = 0;
    for (const auto& p : parts) len += p.second;
    FTSYNC_RETURN_IF_ERROR(Le32(type));
    FTSYNC_RETURN_IF_ERROR(Le32(static_cast<uint32_t>(len)));
    for (const auto& p : parts)
      if (p.second) FTSYNC_RETURN_IF_ERROR(Raw(p.first, p.second));
    static const uint8_t zeros[8] = {};
    if (len % 8) FTSYNC_RETURN_IF_ERROR(Raw(zeros, 8 - len % 8));
    return Status::OK();
  }
  uint64_t bytes() const { return bytes_; }

 private:
  const ByteWriter& out_;
  uint64_t bytes_ = 0;
};

void PutLe(std::vector<uint8_t>* b, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

bool AllZero(const uint8_t* p) {
  static const uint8_t zero[kPage] = {};
  return std::memcmp(p, zero, kPage) == 0;
}

}  // namespace

Status WriteXlSaveImage(const ByteWriter& out, const XenSavedState& st, const uint8_t* memory,
                        std::string_view xl_config, MigV2Counts* counts) {
  if (st.hvm_context.empty())
    return Status(Errc::kInvalidArgument, "xen save image: the state has no HVM context");
  if (st.layout.empty())
    return Status(Errc::kInvalidArgument, "xen save image: the state has no memory layout");
  Emitter e(out);
  MigV2Counts c;

  // xl save-file header (fields in the writer's byte order: little-endian).
  FTSYNC_RETURN_IF_ERROR(e.Raw(kXlMagic, 32));
  const uint32_t optlen = xl_config.empty() ? 0 : static_cast<uint32_t>(4 + xl_config.size());
  FTSYNC_RETURN_IF_ERROR(e.Le32(0x01020304));
  FTSYNC_RETURN_IF_ERROR(e.Le32(migv2::kXlFlagStreamV2));
  FTSYNC_RETURN_IF_ERROR(e.Le32(0));
  FTSYNC_RETURN_IF_ERROR(e.Le32(optlen));
  if (optlen) {
    FTSYNC_RETURN_IF_ERROR(e.Le32(static_cast<uint32_t>(xl_config.size())));
    FTSYNC_RETURN_IF_ERROR(e.Raw(xl_config.data(), xl_config.size()));
  }

  // libxl stream header + LIBXC_CONTEXT.
  FTSYNC_RETURN_IF_ERROR(e.Raw("LibxlFmt", 8));
  FTSYNC_RETURN_IF_ERROR(e.Be32(2));
  FTSYNC_RETURN_IF_ERROR(e.Be32(0));
  FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kLibxcContext, {}));

  // libxc image header and domain header.
  FTSYNC_RETURN_IF_ERROR(e.Be64(~uint64_t{0}));
  FTSYNC_RETURN_IF_ERROR(e.Be32(0x58454E46));  // "XENF"
  FTSYNC_RETURN_IF_ERROR(e.Be32(3));
  FTSYNC_RETURN_IF_ERROR(e.Be32(0));  // options (16 bits) + reserved (16 bits)
  FTSYNC_RETURN_IF_ERROR(e.Be32(0));  // reserved
  {
    std::vector<uint8_t> dh;
    PutLe(&dh, migv2::kDomainTypeX86Hvm, 4);
    PutLe(&dh, 12, 2);  // page_shift
    PutLe(&dh, 0, 2);
    PutLe(&dh, st.xen_major, 4);
    PutLe(&dh, st.xen_minor, 4);
    FTSYNC_RETURN_IF_ERROR(e.Raw(dh.data(), dh.size()));
  }
  if (!st.cpuid_policy.empty())
    FTSYNC_RETURN_IF_ERROR(
        e.Record(migv2::kX86CpuidPolicy, {{st.cpuid_policy.data(), st.cpuid_policy.size()}}));
  if (!st.msr_policy.empty())
    FTSYNC_RETURN_IF_ERROR(
        e.Record(migv2::kX86MsrPolicy, {{st.msr_policy.data(), st.msr_policy.size()}}));
  FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kStaticDataEnd, {}));

  // PAGE_DATA, in layout order.
  std::vector<uint8_t> head;
  std::vector<const uint8_t*> data;
  std::vector<uint8_t> body;
  uint64_t frame = 0;
  auto flush = [&](uint32_t n) -> Status {
    if (n == 0) return Status::OK();
    body.clear();
    PutLe(&body, n, 4);
    PutLe(&body, 0, 4);
    body.insert(body.end(), head.begin(), head.end());
    body.reserve(body.size() + data.size() * kPage);
    for (const uint8_t* p : data) body.insert(body.end(), p, p + kPage);
    head.clear();
    data.clear();
    return e.Record(migv2::kPageData, {{body.data(), body.size()}});
  };
  uint32_t in_rec = 0;
  for (const GfnRange& r : st.layout) {
    for (uint64_t i = 0; i < r.count; ++i, ++frame) {
      const uint8_t* page = memory + frame * kPage;
      const bool zero = AllZero(page);
      const uint64_t type = zero ? migv2::kTypeXalloc : migv2::kTypeNotab;
      PutLe(&head, (r.gfn + i) | (type << 60), 8);
      if (zero) {
        ++c.pages_zero;
      } else {
        data.push_back(page);
        ++c.pages_with_data;
      }
      if (++in_rec == migv2::kMaxPagesPerRecord) {
        FTSYNC_RETURN_IF_ERROR(flush(in_rec));
        in_rec = 0;
      }
    }
  }
  FTSYNC_RETURN_IF_ERROR(flush(in_rec));

  {
    std::vector<uint8_t> tsc;
    PutLe(&tsc, st.tsc_mode, 4);
    PutLe(&tsc, st.tsc_khz, 4);
    PutLe(&tsc, st.tsc_nsec, 8);
    PutLe(&tsc, st.tsc_incarnation, 4);
    PutLe(&tsc, 0, 4);
    FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kX86TscInfo, {{tsc.data(), tsc.size()}}));
  }
  if (!st.params.empty()) {
    std::vector<uint8_t> pr;
    PutLe(&pr, st.params.size(), 4);
    PutLe(&pr, 0, 4);
    for (const HvmParam& p : st.params) {
      PutLe(&pr, p.index, 8);
      PutLe(&pr, p.value, 8);
    }
    FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kHvmParams, {{pr.data(), pr.size()}}));
  }
  FTSYNC_RETURN_IF_ERROR(
      e.Record(migv2::kHvmContext, {{st.hvm_context.data(), st.hvm_context.size()}}));
  FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kEnd, {}));
  // HVM: the device model's xenstore keys, then its state, each after the
  // emulator header (emulator id, index 0), as libxl's restore expects them.
  std::vector<uint8_t> emu;
  PutLe(&emu, migv2::kEmulatorQemuUpstream, 4);
  PutLe(&emu, 0, 4);
  if (!st.dm_xenstore.empty())
    FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kEmulatorXenstoreData,
                                    {{emu.data(), emu.size()}, {st.dm_xenstore.data(), st.dm_xenstore.size()}}));
  if (!st.dm_state.empty())
    FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kEmulatorContext,
                                    {{emu.data(), emu.size()}, {st.dm_state.data(), st.dm_state.size()}}));
  FTSYNC_RETURN_IF_ERROR(e.Record(migv2::kLibxlEnd, {}));
  c.bytes = e.bytes();
  if (counts) *counts = c;
  return Status::OK();
}

}  // namespace ftsync::xen
