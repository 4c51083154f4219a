// ftsync: writes a Xen save image from a replica, in the format `xl save`
// produces and `xl restore` (libxl_domain_create_restore) reads:
//
//   xl save-file header   32-byte magic "Xen saved domain, xl format\n \0 \r",
//                         byte order 0x01020304, mandatory flags (bit 1:
//                         stream v2), optional flags 0, optional data length;
//                         optional data = u32 length + the domain's xl config
//                         (text, so XL_MANDATORY_FLAG_JSON stays clear)
//   libxl stream (Xen docs/specs/libxl-migration-stream.pandoc, version 2)
//     header "LibxlFmt", version 2, options 0 (big-endian fields)
//     LIBXC_CONTEXT record       (the libxc stream follows, inline)
//   libxc stream (docs/specs/libxc-migration-stream.pandoc, version 3)
//     image header  0xffffffffffffffff, "XENF", version 3, options 0 (BE)
//     domain header type 2 (x86 HVM; PVH is HVM to libxc), page_shift 12,
//                   xen_major, xen_minor
//     X86_CPUID_POLICY, X86_MSR_POLICY (when saved), STATIC_DATA_END
//     PAGE_DATA     at most 1024 pfns each, pfn | type << 32: type NOTAB with
//                   4096 bytes of data, or XALLOC (populate, no data) for an
//                   all-zero frame, so the image stays small
//     X86_TSC_INFO, HVM_PARAMS (before HVM_CONTEXT), HVM_CONTEXT, END
//   HVM with a device model (state.dm_*): EMULATOR_XENSTORE_DATA (when
//     there are keys) and EMULATOR_CONTEXT, each body u32 emulator id
//     (2, QEMU upstream), u32 index (0), then the data; libxl hands the
//     context to the new qemu-xen (-incoming) and writes the keys back
//   libxl END record
// Records: u32 type, u32 body length (little-endian), body, zero padding to
// 8 bytes. No Xen headers (the numbers come from the specifications), so the
// layout is unit-tested on any host (test/unit/xen/).
#ifndef FTSYNC_XEN_MIGV2_WRITER_H_
#define FTSYNC_XEN_MIGV2_WRITER_H_

#include <cstdint>
#include <functional>
#include <string_view>

#include "ftsync/status.h"
#include "xen/xen_state.h"

namespace ftsync::xen {

namespace migv2 {
// libxc record types.
constexpr uint32_t kEnd = 0x00, kPageData = 0x01, kX86TscInfo = 0x08, kHvmContext = 0x09,
                   kHvmParams = 0x0a, kStaticDataEnd = 0x10, kX86CpuidPolicy = 0x11,
                   kX86MsrPolicy = 0x12;
// libxl record types, and the emulator id of qemu-xen (QEMU upstream).
constexpr uint32_t kLibxlEnd = 0x00, kLibxcContext = 0x01, kEmulatorXenstoreData = 0x02,
                   kEmulatorContext = 0x03;
constexpr uint32_t kEmulatorQemuUpstream = 2;
// PAGE_DATA pfn types (XEN_DOMCTL_PFINFO_* >> 28), in bits 63..60 of a pfn word.
constexpr uint64_t kTypeNotab = 0x0, kTypeXalloc = 0xe, kTypeXtab = 0xf;
constexpr uint32_t kMaxPagesPerRecord = 1024;
constexpr uint32_t kDomainTypeX86Hvm = 2;
constexpr uint32_t kXlFlagStreamV2 = 1u << 1;
}  // namespace migv2

// Where the bytes go (a file descriptor in production, a vector in tests).
using ByteWriter = std::function<Status(const void* data, size_t n)>;

struct MigV2Counts {
  uint64_t pages_with_data = 0;
  uint64_t pages_zero = 0;  // sent as XALLOC
  uint64_t bytes = 0;
};

// Writes the whole image. `memory` holds LayoutFrames(state.layout) frames
// of 4096 bytes in layout order. `xl_config` is embedded as the save
// file's config (may be empty: then `xl restore CONFIG FILE` must name one).
// kInvalidArgument for a state it cannot express (no HVM context, empty
// layout); write errors as the writer returns them.
Status WriteXlSaveImage(const ByteWriter& out, const XenSavedState& state, const uint8_t* memory,
                        std::string_view xl_config, MigV2Counts* counts = nullptr);

}  // namespace ftsync::xen

#endif  // FTSYNC_XEN_MIGV2_WRITER_H_
