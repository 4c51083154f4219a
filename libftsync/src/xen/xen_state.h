// ftsync: the saved state of a Xen HVM/PVH domain, as XenDomain::SaveState
// produces it (the blob in a replica's state.bin) and the failover path
// reads it back. No Xen headers: this file and xen_state.cc build and are
// unit-tested on hosts without Xen.
//
// Blob layout (ftsync-internal, little-endian, every section 8-aligned):
//   0   8  magic "FTXENST2" (version 1, "FTXENST1", is still read: its
//          header is 80 bytes, offset 76 reserved, and it has no device
//          model sections)
//   8   4  flags (bit 0: taken while the guest sat in a cooperative suspend,
//          i.e. restorable by Xen's restore path; see xen.h)
//  12   4  nr_vcpus
//  16   8  max_pages   (the domain's memory limit, in 4 KiB pages)
//  24   8  tot_pages   (pages it owned)
//  32   4  tsc_mode   36 4 tsc_khz   40 8 tsc_nsec   48 4 tsc_incarnation
//  52   2  xen_major  54 2 xen_minor
//  56   4  nr_params   60 4 nr_ranges
//  64   4  hvm_context bytes  68 4 cpuid_policy bytes  72 4 msr_policy bytes
//  76   4  dm_state bytes   80 4 dm_xenstore bytes   84 4 reserved (0)
//  88      params:  nr_params  x (u64 index, u64 value)
//          layout:  nr_ranges  x (u64 first gfn, u64 count)
//          hvm_context, cpuid_policy, msr_policy, dm_state, dm_xenstore
//          (each padded to 8)
// dm_state and dm_xenstore are empty for a domain without a device model
// (PVH); for an HVM domain they are what Xen's save stream carries in its
// EMULATOR_CONTEXT and EMULATOR_XENSTORE_DATA records.
// The layout lists the domain's populated guest frames in XenDomain frame
// order: frame i of the replica is the i-th gfn the ranges enumerate.
#ifndef FTSYNC_XEN_XEN_STATE_H_
#define FTSYNC_XEN_XEN_STATE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "ftsync/status.h"

namespace ftsync::xen {

struct GfnRange {
  uint64_t gfn = 0;    // first guest frame number
  uint64_t count = 0;  // frames
  bool operator==(const GfnRange&) const = default;
};

struct HvmParam {
  uint64_t index = 0;
  uint64_t value = 0;
  bool operator==(const HvmParam&) const = default;
};

struct XenSavedState {
  static constexpr uint32_t kCooperative = 1;
  uint32_t flags = 0;
  uint32_t nr_vcpus = 0;
  uint64_t max_pages = 0;
  uint64_t tot_pages = 0;
  uint32_t tsc_mode = 0;
  uint32_t tsc_khz = 0;
  uint64_t tsc_nsec = 0;
  uint32_t tsc_incarnation = 0;
  uint16_t xen_major = 0;
  uint16_t xen_minor = 0;
  std::vector<HvmParam> params;
  std::vector<GfnRange> layout;
  std::vector<uint8_t> hvm_context;   // xc_domain_hvm_getcontext's blob
  std::vector<uint8_t> cpuid_policy;  // xen_cpuid_leaf_t[] (may be empty)
  std::vector<uint8_t> msr_policy;    // xen_msr_entry_t[] (may be empty)
  // HVM: qemu-xen's device state (xen-save-devices-state: a QEMU
  // migration stream, "QEVM"), and its xenstore keys under
  // /local/domain/0/device-model/DOMID as "key\0value\0" pairs with
  // relative keys (physmap/ID/start_addr, size, name).
  std::vector<uint8_t> dm_state;
  std::vector<uint8_t> dm_xenstore;
  bool operator==(const XenSavedState&) const = default;
};

// Total frames the layout enumerates.
uint64_t LayoutFrames(std::span<const GfnRange> layout);

std::vector<uint8_t> EncodeXenState(const XenSavedState& s);
// kCorruption, naming the field, for anything malformed (bad magic, sizes
// that overrun the blob, overlapping or unsorted ranges, nonzero reserved).
Result<XenSavedState> DecodeXenState(std::span<const uint8_t> blob);

}  // namespace ftsync::xen

#endif  // FTSYNC_XEN_XEN_STATE_H_
