// The Xen save image ftsync writes at failover (src/xen/migv2_writer.h) and
// the saved-state blob it is made from (src/xen/xen_state.h), checked
// against the layout of Xen's docs/specs/libxl-migration-stream.pandoc,
// libxc-migration-stream.pandoc and xl's save-file header by an
// independent reader written here. No Xen needed.
#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "xen/migv2_writer.h"
#include "xen/xen_state.h"

namespace ftsync::xen {
namespace {

uint32_t Le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t{p[3]} << 24; }
uint64_t Le64(const uint8_t* p) { return Le32(p) | uint64_t{Le32(p + 4)} << 32; }
uint32_t Be32(const uint8_t* p) { return uint32_t{p[0]} << 24 | p[1] << 16 | p[2] << 8 | p[3]; }
uint64_t Be64(const uint8_t* p) { return uint64_t{Be32(p)} << 32 | Be32(p + 4); }

XenSavedState SampleState() {
  XenSavedState s;
  s.flags = XenSavedState::kCooperative;
  s.nr_vcpus = 1;
  s.max_pages = 32768 + 256;
  s.tot_pages = 32784;
  s.tsc_mode = 0;
  s.tsc_khz = 2000000;
  s.tsc_nsec = 123456789;
  s.tsc_incarnation = 3;
  s.xen_major = 4;
  s.xen_minor = 17;
  s.params = {{1, 0xfeffc}, {17, 0xfeffb}};  // STORE_PFN, CONSOLE_PFN
  s.layout = {{0, 3}, {0x10, 2}, {0xfeffb, 2}};
  s.hvm_context = std::vector<uint8_t>(37, 0xab);  // odd length: record padding
  s.cpuid_policy = std::vector<uint8_t>(48, 0x11);
  s.msr_policy = std::vector<uint8_t>(16, 0x22);
  return s;
}

// Frames in layout order: frame i filled with byte i+1, frame 2 all zero.
std::vector<uint8_t> SampleMemory(uint64_t frames) {
  std::vector<uint8_t> m(frames * 4096);
  for (uint64_t i = 0; i < frames; ++i) std::memset(&m[i * 4096], i == 2 ? 0 : int(i + 1), 4096);
  return m;
}

struct Rec {
  uint32_t type;
  std::vector<uint8_t> body;
};

// An independent reader of what WriteXlSaveImage writes.
struct Parsed {
  uint32_t xl_flags = 0;
  std::string config;
  std::vector<Rec> libxl;  // records before and after the libxc stream
  uint32_t dom_type = 0, page_shift = 0, xen_major = 0, xen_minor = 0;
  std::vector<Rec> libxc;
};

Parsed Parse(const std::vector<uint8_t>& b) {
  Parsed p;
  size_t off = 0;
  REQUIRE(b.size() >= 48);
  REQUIRE(std::memcmp(b.data(), "Xen saved domain, xl format\n \0 \r", 32) == 0);
  CHECK(Le32(&b[32]) == 0x01020304);
  p.xl_flags = Le32(&b[36]);
  CHECK(Le32(&b[40]) == 0);  // optional flags
  const uint32_t optlen = Le32(&b[44]);
  off = 48;
  if (optlen) {
    const uint32_t clen = Le32(&b[off]);
    REQUIRE(clen + 4 == optlen);
    p.config.assign(reinterpret_cast<const char*>(&b[off + 4]), clen);
    off += optlen;
  }
  // libxl header.
  REQUIRE(std::memcmp(&b[off], "LibxlFmt", 8) == 0);
  CHECK(Be32(&b[off + 8]) == 2);
  CHECK(Be32(&b[off + 12]) == 0);
  off += 16;
  auto record = [&](std::vector<Rec>* into) {
    REQUIRE(off + 8 <= b.size());
    Rec r{Le32(&b[off]), {}};
    const uint32_t len = Le32(&b[off + 4]);
    REQUIRE(off + 8 + len <= b.size());
    r.body.assign(b.begin() + off + 8, b.begin() + off + 8 + len);
    const size_t padded = (len + 7) & ~size_t{7};
    for (size_t i = len; i < padded; ++i) CHECK(b[off + 8 + i] == 0);
    off += 8 + padded;
    into->push_back(r);
    return r.type;
  };
  REQUIRE(record(&p.libxl) == migv2::kLibxcContext);
  REQUIRE(p.libxl.back().body.empty());
  // libxc image header (24 bytes, big-endian) and domain header (16).
  CHECK(Be64(&b[off]) == ~uint64_t{0});
  CHECK(Be32(&b[off + 8]) == 0x58454E46);
  CHECK(Be32(&b[off + 12]) == 3);
  CHECK(Be64(&b[off + 16]) == 0);  // options (little-endian) + reserved
  off += 24;
  p.dom_type = Le32(&b[off]);
  p.page_shift = b[off + 4] | b[off + 5] << 8;
  CHECK((b[off + 6] | b[off + 7]) == 0);
  p.xen_major = Le32(&b[off + 8]);
  p.xen_minor = Le32(&b[off + 12]);
  off += 16;
  while (record(&p.libxc) != migv2::kEnd) {
  }
  while (record(&p.libxl) != migv2::kLibxlEnd) {
    REQUIRE(p.libxl.size() < 8);
  }
  CHECK(off == b.size());
  return p;
}

std::vector<uint8_t> Write(const XenSavedState& s, const std::vector<uint8_t>& mem,
                           const std::string& config, MigV2Counts* c = nullptr) {
  std::vector<uint8_t> out;
  ByteWriter w = [&](const void* p, size_t n) {
    const uint8_t* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
    return Status::OK();
  };
  REQUIRE(WriteXlSaveImage(w, s, mem.data(), config, c).ok());
  return out;
}

TEST_CASE("xen state blob round-trips and rejects damage", "[xen]") {
  XenSavedState s = SampleState();
  std::vector<uint8_t> blob = EncodeXenState(s);
  CHECK(blob.size() % 8 == 0);
  CHECK(std::memcmp(blob.data(), "FTXENST2", 8) == 0);
  auto d = DecodeXenState(blob);
  REQUIRE(d.ok());
  CHECK(*d == s);
  CHECK(LayoutFrames(s.layout) == 7);

  SECTION("with a device model's state and xenstore keys") {
    s.dm_state = {'Q', 'E', 'V', 'M', 0, 0, 0, 3, 9};  // odd length: padding
    const std::string keys = std::string("physmap/f0000000/start_addr\0f0000000\0", 39);
    s.dm_xenstore.assign(keys.begin(), keys.end());
    std::vector<uint8_t> b2 = EncodeXenState(s);
    CHECK(b2.size() % 8 == 0);
    auto d2 = DecodeXenState(b2);
    REQUIRE(d2.ok());
    CHECK(*d2 == s);
    s.dm_xenstore.back() = 'x';
    auto bad = DecodeXenState(EncodeXenState(s));
    CHECK(bad.status().code() == Errc::kCorruption);
    CHECK(bad.status().ToString().find("NUL") != std::string::npos);
  }
  SECTION("version 1 blobs (no device model sections) are still read") {
    // Version 1: magic FTXENST1 and an 80-byte header, sections right after.
    std::vector<uint8_t> v1(blob.begin(), blob.begin() + 80);
    v1.insert(v1.end(), blob.begin() + 88, blob.end());
    std::memcpy(v1.data(), "FTXENST1", 8);
    v1[76] = v1[77] = v1[78] = v1[79] = 0;
    auto d1 = DecodeXenState(v1);
    REQUIRE(d1.ok());
    CHECK(*d1 == s);
    v1[76] = 1;  // version 1's reserved word
    CHECK(DecodeXenState(v1).status().code() == Errc::kCorruption);
  }
  SECTION("bad magic") {
    blob[0] = 'X';
    CHECK(DecodeXenState(blob).status().code() == Errc::kCorruption);
  }
  SECTION("truncated") {
    blob.resize(blob.size() - 8);
    auto r = DecodeXenState(blob);
    CHECK(r.status().code() == Errc::kCorruption);
    CHECK(r.status().ToString().find("bytes") != std::string::npos);
  }
  SECTION("overlapping ranges") {
    s.layout = {{0, 4}, {2, 4}};
    CHECK(DecodeXenState(EncodeXenState(s)).status().code() == Errc::kCorruption);
  }
  SECTION("unknown flag") {
    s.flags = 6;
    CHECK(DecodeXenState(EncodeXenState(s)).status().code() == Errc::kCorruption);
  }
  SECTION("no HVM context") {
    s.hvm_context.clear();
    CHECK(DecodeXenState(EncodeXenState(s)).status().code() == Errc::kCorruption);
  }
  SECTION("a raw HVM context (the old format) is refused") {
    CHECK(!DecodeXenState(std::vector<uint8_t>(2504, 0)).ok());
  }
}

TEST_CASE("xl save image: headers, record order, pages by layout", "[xen]") {
  XenSavedState s = SampleState();
  const std::vector<uint8_t> mem = SampleMemory(LayoutFrames(s.layout));
  MigV2Counts c;
  const std::string config = "name = \"ftsync-restored\"\ntype = \"pvh\"\nmemory = 128\n";
  Parsed p = Parse(Write(s, mem, config, &c));

  CHECK(p.xl_flags == migv2::kXlFlagStreamV2);  // text config: no JSON flag
  CHECK(p.config == config);
  CHECK(p.dom_type == migv2::kDomainTypeX86Hvm);
  CHECK(p.page_shift == 12);
  CHECK(p.xen_major == 4);
  CHECK(p.xen_minor == 17);

  // Order: policies, STATIC_DATA_END, PAGE_DATA..., TSC, HVM_PARAMS, HVM_CONTEXT, END.
  std::vector<uint32_t> types;
  for (const Rec& r : p.libxc) types.push_back(r.type);
  REQUIRE(types.size() == 8);
  CHECK(types == std::vector<uint32_t>{migv2::kX86CpuidPolicy, migv2::kX86MsrPolicy,
                                       migv2::kStaticDataEnd, migv2::kPageData,
                                       migv2::kX86TscInfo, migv2::kHvmParams,
                                       migv2::kHvmContext, migv2::kEnd});
  CHECK(p.libxc[0].body == s.cpuid_policy);
  CHECK(p.libxc[1].body == s.msr_policy);
  CHECK(p.libxc[2].body.empty());

  // PAGE_DATA: count, reserved, pfn words (gfn | type << 60), data of NOTAB pages.
  const Rec& pd = p.libxc[3];
  REQUIRE(pd.body.size() >= 8);
  const uint32_t count = Le32(&pd.body[0]);
  CHECK(Le32(&pd.body[4]) == 0);
  REQUIRE(count == 7);
  const std::vector<uint64_t> gfns = {0, 1, 2, 0x10, 0x11, 0xfeffb, 0xfeffc};
  size_t data_off = 8 + 8 * count, frame_with_data = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const uint64_t w = Le64(&pd.body[8 + 8 * i]);
    CHECK((w & ((uint64_t{1} << 52) - 1)) == gfns[i]);
    const uint64_t type = w >> 60;
    if (i == 2) {
      CHECK(type == migv2::kTypeXalloc);  // all-zero frame: populated, no data
      continue;
    }
    CHECK(type == migv2::kTypeNotab);
    REQUIRE(data_off + 4096 <= pd.body.size());
    CHECK(std::memcmp(&pd.body[data_off], &mem[i * 4096], 4096) == 0);
    data_off += 4096;
    ++frame_with_data;
  }
  CHECK(data_off == pd.body.size());
  CHECK(c.pages_with_data == 6);
  CHECK(c.pages_zero == 1);
  CHECK(frame_with_data == 6);

  const Rec& tsc = p.libxc[4];
  REQUIRE(tsc.body.size() == 24);
  CHECK(Le32(&tsc.body[0]) == s.tsc_mode);
  CHECK(Le32(&tsc.body[4]) == s.tsc_khz);
  CHECK(Le64(&tsc.body[8]) == s.tsc_nsec);
  CHECK(Le32(&tsc.body[16]) == s.tsc_incarnation);
  CHECK(Le32(&tsc.body[20]) == 0);

  const Rec& params = p.libxc[5];
  REQUIRE(params.body.size() == 8 + 16 * s.params.size());
  CHECK(Le32(&params.body[0]) == s.params.size());
  for (size_t i = 0; i < s.params.size(); ++i) {
    CHECK(Le64(&params.body[8 + 16 * i]) == s.params[i].index);
    CHECK(Le64(&params.body[16 + 16 * i]) == s.params[i].value);
  }
  CHECK(p.libxc[6].body == s.hvm_context);
  CHECK(p.libxc[7].body.empty());
  // PVH: no device model, so no emulator records.
  REQUIRE(p.libxl.size() == 2);
  CHECK(p.libxl[1].type == migv2::kLibxlEnd);
}

TEST_CASE("xl save image: an HVM domain's device model goes in EMULATOR records", "[xen]") {
  XenSavedState s = SampleState();
  s.dm_state = std::vector<uint8_t>{'Q', 'E', 'V', 'M', 0, 0, 0, 3, 1, 2, 3};
  const std::string keys("physmap/f0000000/start_addr\0f0000000\0physmap/f0000000/size\0800000\0", 59);
  s.dm_xenstore.assign(keys.begin(), keys.end());
  const std::vector<uint8_t> mem = SampleMemory(LayoutFrames(s.layout));
  Parsed p = Parse(Write(s, mem, "type = \"hvm\"\n"));
  // libxl: LIBXC_CONTEXT, (libxc stream), EMULATOR_XENSTORE_DATA, EMULATOR_CONTEXT, END.
  REQUIRE(p.libxl.size() == 4);
  CHECK(p.libxl[1].type == migv2::kEmulatorXenstoreData);
  CHECK(p.libxl[2].type == migv2::kEmulatorContext);
  CHECK(p.libxl[3].type == migv2::kLibxlEnd);
  for (int i : {1, 2}) {
    const Rec& r = p.libxl[i];
    REQUIRE(r.body.size() >= 8);
    CHECK(Le32(&r.body[0]) == 2);  // emulator id: QEMU upstream
    CHECK(Le32(&r.body[4]) == 0);  // index
  }
  CHECK(std::vector<uint8_t>(p.libxl[1].body.begin() + 8, p.libxl[1].body.end()) == s.dm_xenstore);
  CHECK(std::vector<uint8_t>(p.libxl[2].body.begin() + 8, p.libxl[2].body.end()) == s.dm_state);
  // Without xenstore keys (no VRAM), only the context.
  s.dm_xenstore.clear();
  Parsed q = Parse(Write(s, mem, ""));
  REQUIRE(q.libxl.size() == 3);
  CHECK(q.libxl[1].type == migv2::kEmulatorContext);
}

TEST_CASE("xl save image: PAGE_DATA records hold at most 1024 pfns", "[xen]") {
  XenSavedState s = SampleState();
  s.layout = {{0, 2500}};
  s.cpuid_policy.clear();
  s.msr_policy.clear();
  s.params.clear();
  std::vector<uint8_t> mem(2500 * 4096, 0);
  for (size_t i = 0; i < 2500; i += 7) mem[i * 4096 + 100] = 1;  // some frames nonzero
  Parsed p = Parse(Write(s, mem, ""));
  CHECK(p.config.empty());
  std::vector<uint32_t> counts;
  uint64_t next = 0;
  for (const Rec& r : p.libxc) {
    CHECK(r.type != migv2::kHvmParams);  // no params: no record
    CHECK(r.type != migv2::kX86CpuidPolicy);
    if (r.type != migv2::kPageData) continue;
    const uint32_t n = Le32(&r.body[0]);
    counts.push_back(n);
    size_t with_data = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const uint64_t w = Le64(&r.body[8 + 8 * i]);
      CHECK((w & 0xfffffffffffff) == next);
      with_data += (w >> 60) == migv2::kTypeNotab;
      CHECK((w >> 60) == ((next % 7 == 0) ? migv2::kTypeNotab : migv2::kTypeXalloc));
      ++next;
    }
    CHECK(r.body.size() == 8 + 8 * n + 4096 * with_data);
  }
  CHECK(counts == std::vector<uint32_t>{1024, 1024, 452});
}

TEST_CASE("xl save image refuses a state without HVM context or layout", "[xen]") {
  XenSavedState s = SampleState();
  std::vector<uint8_t> mem = SampleMemory(LayoutFrames(s.layout));
  ByteWriter sink = [](const void*, size_t) { return Status::OK(); };
  XenSavedState a = s;
  a.hvm_context.clear();
  CHECK(WriteXlSaveImage(sink, a, mem.data(), "").code() == Errc::kInvalidArgument);
  XenSavedState b = s;
  b.layout.clear();
  CHECK(WriteXlSaveImage(sink, b, mem.data(), "").code() == Errc::kInvalidArgument);
  // A writer error stops the image and comes back as it was.
  int calls = 0;
  ByteWriter failing = [&](const void*, size_t) {
    return ++calls == 5 ? Status(Errc::kNoSpace, "disk full") : Status::OK();
  };
  CHECK(WriteXlSaveImage(failing, s, mem.data(), "").code() == Errc::kNoSpace);
  CHECK(calls == 5);
}

}  // namespace
}  // namespace ftsync::xen
