// ftsync: encoding of XenDomain's saved state (layout in xen_state.h).
#include "xen/xen_state.h"

#include <cstring>
#include <string>

namespace ftsync::xen {
namespace {

constexpr char kMagicV1[8] = {'F', 'T', 'X', 'E', 'N', 'S', 'T', '1'};
constexpr char kMagic[8] = {'F', 'T', 'X', 'E', 'N', 'S', 'T', '2'};
constexpr size_t kHeaderV1 = 80;
constexpr size_t kHeader = 88;

size_t Pad8(size_t n) { return (n + 7) & ~size_t{7}; }

void Put32(std::vector<uint8_t>* b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*b)[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(std::vector<uint8_t>* b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) (*b)[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t Get32(std::span<const uint8_t> b, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{b[off + i]} << (8 * i);
  return v;
}
uint64_t Get64(std::span<const uint8_t> b, size_t off) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{b[off + i]} << (8 * i);
  return v;
}
Status Bad(const std::string& what) {
  return Status(Errc::kCorruption, "xen saved state: " + what);
}

}  // namespace

uint64_t LayoutFrames(std::span<const GfnRange> layout) {
  uint64_t n = 0;
  for (const GfnRange& r : layout) n += r.count;
  return n;
}

std::vector<uint8_t> EncodeXenState(const XenSavedState& s) {
  const size_t total = kHeader + s.params.size() * 16 + s.layout.size() * 16 +
                       Pad8(s.hvm_context.size()) + Pad8(s.cpuid_policy.size()) +
                       Pad8(s.msr_policy.size()) + Pad8(s.dm_state.size()) + Pad8(s.dm_xenstore.size());
  std::vector<uint8_t> b(total, 0);
  std::memcpy(b.data(), kMagic, 8);
  Put32(&b, 8, s.flags);
  Put32(&b, 12, s.nr_vcpus);
  Put64(&b, 16, s.max_pages);
  Put64(&b, 24, s.tot_pages);
  Put32(&b, 32, s.tsc_mode);
  Put32(&b, 36, s.tsc_khz);
  Put64(&b, 40, s.tsc_nsec);
  Put32(&b, 48, s.tsc_incarnation);
  b[52] = static_cast<uint8_t>(s.xen_major);
  b[53] = static_cast<uint8_t>(s.xen_major >> 8);
  b[54] = static_cast<uint8_t>(s.xen_minor);
  b[55] = static_cast<uint8_t>(s.xen_minor >> 8);
  Put32(&b, 56, static_cast<uint32_t>(s.params.size()));
  Put32(&b, 60, static_cast<uint32_t>(s.layout.size()));
  Put32(&b, 64, static_cast<uint32_t>(s.hvm_context.size()));
  Put32(&b, 68, static_cast<uint32_t>(s.cpuid_policy.size()));
  Put32(&b, 72, static_cast<uint32_t>(s.msr_policy.size()));
  Put32(&b, 76, static_cast<uint32_t>(s.dm_state.size()));
  Put32(&b, 80, static_cast<uint32_t>(s.dm_xenstore.size()));
  size_t off = kHeader;
  for (const HvmParam& p : s.params) {
    Put64(&b, off, p.index);
    Put64(&b, off + 8, p.value);
    off += 16;
  }
  for (const GfnRange& r : s.layout) {
    Put64(&b, off, r.gfn);
    Put64(&b, off + 8, r.count);
    off += 16;
  }
  for (const std::vector<uint8_t>* v :
       {&s.hvm_context, &s.cpuid_policy, &s.msr_policy, &s.dm_state, &s.dm_xenstore}) {
    if (!v->empty()) std::memcpy(b.data() + off, v->data(), v->size());
    off += Pad8(v->size());
  }
  return b;
}

Result<XenSavedState> DecodeXenState(std::span<const uint8_t> b) {
  if (b.size() < kHeaderV1) return Bad(std::to_string(b.size()) + " bytes, shorter than its header");
  const bool v1 = std::memcmp(b.data(), kMagicV1, 8) == 0;
  if (!v1 && std::memcmp(b.data(), kMagic, 8) != 0) return Bad("bad magic (not an ftsync Xen state)");
  const size_t header = v1 ? kHeaderV1 : kHeader;
  if (b.size() < header) return Bad(std::to_string(b.size()) + " bytes, shorter than its header");
  XenSavedState s;
  s.flags = Get32(b, 8);
  if (s.flags & ~XenSavedState::kCooperative) return Bad("unknown flags");
  s.nr_vcpus = Get32(b, 12);
  s.max_pages = Get64(b, 16);
  s.tot_pages = Get64(b, 24);
  s.tsc_mode = Get32(b, 32);
  s.tsc_khz = Get32(b, 36);
  s.tsc_nsec = Get64(b, 40);
  s.tsc_incarnation = Get32(b, 48);
  s.xen_major = static_cast<uint16_t>(b[52] | (b[53] << 8));
  s.xen_minor = static_cast<uint16_t>(b[54] | (b[55] << 8));
  const uint64_t nparams = Get32(b, 56), nranges = Get32(b, 60);
  const uint64_t nctx = Get32(b, 64), ncpuid = Get32(b, 68), nmsr = Get32(b, 72);
  const uint64_t ndm = v1 ? 0 : Get32(b, 76), ndmxs = v1 ? 0 : Get32(b, 80);
  if (Get32(b, v1 ? 76 : 84) != 0) return Bad("reserved field is not zero");
  const uint64_t need = header + nparams * 16 + nranges * 16 + Pad8(nctx) + Pad8(ncpuid) + Pad8(nmsr) +
                        Pad8(ndm) + Pad8(ndmxs);
  if (need != b.size())
    return Bad("sections need " + std::to_string(need) + " bytes, blob has " + std::to_string(b.size()));
  if (s.nr_vcpus == 0) return Bad("nr_vcpus is 0");
  if (nctx == 0) return Bad("no HVM context");
  size_t off = header;
  for (uint64_t i = 0; i < nparams; ++i, off += 16) s.params.push_back({Get64(b, off), Get64(b, off + 8)});
  uint64_t next = 0;
  for (uint64_t i = 0; i < nranges; ++i, off += 16) {
    GfnRange r{Get64(b, off), Get64(b, off + 8)};
    if (r.count == 0) return Bad("empty gfn range " + std::to_string(i));
    if (r.gfn < next || r.gfn + r.count < r.gfn || r.gfn + r.count > (uint64_t{1} << 52))
      return Bad("gfn range " + std::to_string(i) + " unsorted, overlapping or out of range");
    next = r.gfn + r.count;
    s.layout.push_back(r);
  }
  if (s.layout.empty()) return Bad("empty memory layout");
  auto take = [&](uint64_t n, std::vector<uint8_t>* v) {
    v->assign(b.begin() + off, b.begin() + off + n);
    off += Pad8(n);
  };
  take(nctx, &s.hvm_context);
  take(ncpuid, &s.cpuid_policy);
  take(nmsr, &s.msr_policy);
  take(ndm, &s.dm_state);
  take(ndmxs, &s.dm_xenstore);
  if (!s.dm_xenstore.empty() && s.dm_xenstore.back() != 0)
    return Bad("device model xenstore data does not end in NUL");
  return s;
}

}  // namespace ftsync::xen
