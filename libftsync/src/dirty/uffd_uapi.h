// ftsync: the Linux uAPI pieces of userfaultfd write-protect async mode
// (Linux 6.7) and of the PAGEMAP_SCAN ioctl (Linux 6.7).
//
// Older system headers (Debian 12 ships those of Linux 6.1) lack them, so
// they are defined here when missing. The values and layouts are the
// kernel's stable ABI; the static_asserts below pin the layouts.
#ifndef FTSYNC_DIRTY_UFFD_UAPI_H_
#define FTSYNC_DIRTY_UFFD_UAPI_H_

#include <linux/fs.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <cstddef>

// userfaultfd(2) flag: handle faults from user mode only; an unprivileged
// caller may use it when vm.unprivileged_userfaultfd is 0 (Linux 5.11).
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

// Write-protect unpopulated (never touched) pages too, so that the first
// write to them is tracked (Linux 6.4).
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

// Resolve write-protect faults in the kernel without a handler: the page
// becomes writable and is marked written (Linux 6.7).
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN

// Flags of pm_scan_arg.flags.
#define PM_SCAN_WP_MATCHING (1 << 0)    // write-protect the matched pages
#define PM_SCAN_CHECK_WPASYNC (1 << 1)  // fail (EPERM) on a non-async-wp VMA

// Page categories, used in the masks and in page_region.categories.
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

// One output run: pages [start, end) that share the same categories.
struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};

// The argument of the PAGEMAP_SCAN ioctl on /proc/<pid>/pagemap.
struct pm_scan_arg {
  __u64 size;                 // sizeof(struct pm_scan_arg)
  __u64 flags;                // PM_SCAN_*
  __u64 start;                // first address, page aligned
  __u64 end;                  // one past the last address
  __u64 walk_end;             // out: where the walk stopped
  __u64 vec;                  // struct page_region array (caller's memory)
  __u64 vec_len;              // its capacity, in entries
  __u64 max_pages;            // 0 = no limit
  __u64 category_inverted;    // categories that match when clear
  __u64 category_mask;        // all of these must match
  __u64 category_anyof_mask;  // at least one of these must match
  __u64 return_mask;          // categories reported in page_region
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

#endif  // PAGEMAP_SCAN

static_assert(sizeof(struct page_region) == 24, "page_region layout");
static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg layout");
static_assert(offsetof(struct pm_scan_arg, walk_end) == 32,
              "pm_scan_arg layout");
static_assert(offsetof(struct pm_scan_arg, return_mask) == 88,
              "pm_scan_arg layout");

#endif  // FTSYNC_DIRTY_UFFD_UAPI_H_
