// ftsync: dirty-page tracking of a Linux process's memory range, from inside
// or outside that process (for example a QEMU guest-RAM mapping scanned by a
// separate replication process).
//
// Two halves:
//   UffdWpRegistration  lives in the process that owns the mapping. It
//                       registers the range with a userfaultfd in
//                       write-protect async mode: the first write to a page
//                       after it was protected is resolved by the kernel
//                       (no handler thread) and marks the page written.
//   PagemapDirtyTracker lives in any process allowed to read
//                       /proc/<pid>/pagemap (the owner itself, or another
//                       process with ptrace read access). It reads and
//                       clears the written state with the PAGEMAP_SCAN
//                       ioctl; clearing write-protects the pages again.
//
// Requires Linux 6.7 or later (UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN) on an
// architecture with userfaultfd write-protect (x86-64; arm64 from 6.10).
// Writes that do not go through the registered mapping (another mapping of
// the same shared file, a device doing DMA into the file) are not seen.
#ifndef FTSYNC_LINUX_DIRTY_TRACKER_H_
#define FTSYNC_LINUX_DIRTY_TRACKER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/status.h"

namespace ftsync {

// Checks that this kernel can do what this header needs: the userfaultfd
// syscall with UFFD_FEATURE_WP_ASYNC and UFFD_FEATURE_WP_UNPOPULATED, and
// the PAGEMAP_SCAN ioctl.
// Effect on success: none (returns OK; nothing stays open).
// On failure: kNotSupported whose context names the missing feature, the
// kernel version that has it (6.7) and the running kernel's release; or the
// errno-derived Status of an unexpected system-call failure (for example
// EPERM from a seccomp filter).
Status ProbeUffdWpAsync();

// A page-aligned range of this process registered for write tracking.
// Not copyable or movable; owned through unique_ptr.
class UffdWpRegistration {
 public:
  // Prerequisites: [addr, addr+len) is mapped in this process, addr and len
  // are multiples of the page size, len > 0, and no part of the range is
  // registered with another userfaultfd. Anonymous (including transparent
  // huge pages), memfd and tmpfs (/dev/shm) mappings are tested.
  // Effect on success: creates a userfaultfd (close-on-exec, non-blocking),
  // enables write-protect async mode, registers the range and
  // write-protects all of it, so that every later write to a page marks
  // it written until a PagemapDirtyTracker clears it. Pages never touched
  // are protected as well: their first write is tracked.
  // On failure: nothing stays registered or open. kInvalidArgument for a
  // null, unaligned or empty range, or one that is not entirely mapped or
  // whose mapping type userfaultfd rejects; kFailedPrecondition when part
  // of the range is registered with another userfaultfd; kNotSupported
  // when the kernel lacks the features (see ProbeUffdWpAsync); otherwise
  // the errno-derived Status.
  static Result<std::unique_ptr<UffdWpRegistration>> Register(void* addr,
                                                              size_t len);

  // Closes the userfaultfd, which unregisters the range: pages keep their
  // contents and become ordinary writable pages. Safe after the range was
  // unmapped; never touches a mapping registered through another
  // userfaultfd. If a copy of fd() survives elsewhere (a fork without
  // exec), the registration lasts until that copy is closed too.
  ~UffdWpRegistration();

  UffdWpRegistration(const UffdWpRegistration&) = delete;
  UffdWpRegistration& operator=(const UffdWpRegistration&) = delete;

  void* addr() const { return addr_; }
  size_t length() const { return len_; }
  // The userfaultfd; owned by this object. Reading it never yields events
  // (async mode resolves every write-protect fault in the kernel).
  int fd() const { return fd_; }

 private:
  UffdWpRegistration(void* addr, size_t len, int fd)
      : addr_(addr), len_(len), fd_(fd) {}

  void* const addr_;
  const size_t len_;
  const int fd_;
};

// Reads and clears the written state of a registered range of process
// `pid`. Not thread-safe: one caller at a time per object (distinct objects
// on the same range must not clear concurrently either, or each sees only
// part of the writes). Not copyable or movable.
class PagemapDirtyTracker {
 public:
  // Prerequisites: addr and len are multiples of the page size
  // (sysconf(_SC_PAGESIZE)), len > 0, addr + len does not overflow; pid is
  // 0 (this process) or a live process whose /proc/<pid>/pagemap the
  // caller may open (same user with ptrace access, or root). The range
  // need not be registered yet; the scans require it.
  // Effect on success: opens /proc/<pid>/pagemap (close-on-exec) and
  // allocates the scan buffer. Nothing in the target process changes.
  // On failure: kInvalidArgument for a bad range, kNotFound when the
  // process does not exist, otherwise the errno-derived Status (EACCES ->
  // kIoError).
  static Result<std::unique_ptr<PagemapDirtyTracker>> Open(pid_t pid,
                                                           uint64_t addr,
                                                           size_t len);
  ~PagemapDirtyTracker();

  PagemapDirtyTracker(const PagemapDirtyTracker&) = delete;
  PagemapDirtyTracker& operator=(const PagemapDirtyTracker&) = delete;

  // Prerequisites: the whole range is registered by a UffdWpRegistration
  // in the target process; out != nullptr.
  // Effect on success: resizes *out to page_count() bits and sets bit i
  // for every page at addr + i * page_size() written through the
  // registered mapping since the previous FetchAndClear, Rearm of that
  // page, or registration; write-protects those pages again, so each write
  // is reported by exactly one FetchAndClear (a write racing with the scan
  // shows up in this one or the next). Never misses a written page; may
  // report extra pages (on shared memory, a read of a never-touched page
  // can count as a write). Pages of the range that are no longer mapped
  // are reported clean.
  // On failure: kFailedPrecondition when part of the range is not
  // registered (context names the range and pid); kNotFound when the
  // process is gone; otherwise the errno-derived Status. *out then holds
  // a subset of the written pages, and those pages may already be
  // write-protected again: treat the whole range as dirty before retrying.
  Status FetchAndClear(DirtyBitmap* out);

  // As FetchAndClear, but changes no page state: the same pages are
  // reported again by the next Peek or FetchAndClear.
  Status Peek(DirtyBitmap* out);

  // Prerequisites: as FetchAndClear; every entry < page_count() (indices
  // relative to the range, as in the bitmaps). Ascending order is fastest:
  // each run of consecutive indices costs one system call.
  // Effect on success: clears the written state of those pages and
  // write-protects them again, as if a FetchAndClear had reported them;
  // later writes to them are reported by the next FetchAndClear. To send a
  // page ahead of a checkpoint, Rearm it first and copy it afterwards:
  // then a write racing with the copy is not lost.
  // On failure: kInvalidArgument (nothing changed) for an index out of
  // range; otherwise as FetchAndClear, and a prefix of the runs may have
  // been rearmed.
  Status Rearm(std::span<const uint64_t> pages);

  uint64_t page_count() const { return page_count_; }
  size_t page_size() const { return page_size_; }
  pid_t pid() const { return pid_; }
  uint64_t addr() const { return addr_; }

 private:
  PagemapDirtyTracker(pid_t pid, int fd, uint64_t addr, size_t page_size,
                      uint64_t page_count);

  // Scans [first, first+count) pages of the range for written pages,
  // write-protecting them again when `clear`; sets their bits in *out
  // unless out is null.
  Status Scan(uint64_t first, uint64_t count, bool clear, DirtyBitmap* out);
  Status ScanError(int err, uint64_t start, uint64_t end) const;
  // kNotFound when the target process has exited.
  Status CheckAlive() const;

  // Layout of the kernel's struct page_region (checked in the .cc).
  struct Region {
    uint64_t start;
    uint64_t end;
    uint64_t categories;
  };

  const pid_t pid_;
  const int fd_;
  const uint64_t addr_;
  const size_t page_size_;
  const uint64_t page_count_;
  std::vector<Region> regions_;  // scan output buffer
};

}  // namespace ftsync

#endif  // FTSYNC_LINUX_DIRTY_TRACKER_H_
