// ftsync: the QEMU backend. A stock QEMU (Debian's qemu-system-x86, 7.2)
// whose guest RAM lives in a shared file, driven over QMP.
//
//   QemuLaunch     what to start: binary, RAM file and size, QMP socket,
//                  preload library, extra arguments; BuildQemuArgv turns it
//                  into QEMU's command line.
//   QemuProcess    a QEMU this process started: fork/exec with the preload
//                  library, waits until QMP answers and the guest RAM is
//                  registered for dirty tracking; kill, wait, log tail.
//   QmpClient      one QMP connection: capabilities negotiation, commands
//                  with timeouts, events queued aside, file descriptors
//                  passed with getfd (SCM_RIGHTS).
//   QemuDomain     the Domain seam over a QEMU: RAM read through a
//                  read-only shared mapping of the RAM file, dirty log from
//                  userfaultfd write-protect + PAGEMAP_SCAN on QEMU's own
//                  mapping, suspend/resume with stop/cont, CPU and device
//                  state with migration capability x-ignore-shared over a
//                  pipe; Restore starts a QEMU from a replica.
//
// How the dirty log reaches into QEMU (see linux_dirty_tracker.h): the
// range must be registered by a userfaultfd created inside QEMU. The
// project's preload library (libftsync/preload/qemu_preload.cc, loaded
// with LD_PRELOAD) hooks mmap, registers QEMU's mapping of the RAM file
// when QEMU creates it, and reports its address on a pipe. If it cannot,
// QEMU refuses to start and the Launch fails with the preload's message.
//
//   launcher (this library)                QEMU (+ preload)
//   ----------------------                 ----------------
//   create RAM file, size it
//   fork/exec  LD_PRELOAD=preload.so  -->  preload: mmap hook armed
//              FTSYNC_RAM_PATH/SIZE         QEMU maps RAM file MAP_SHARED
//              FTSYNC_REPORT_FD=3           preload: register uffd-wp,
//   read "ram ADDR LEN"          <-------   report "ram ADDR LEN"
//   QMP: greeting, qmp_capabilities <-->    QMP server on the unix socket
//   PagemapDirtyTracker(pid, ADDR, LEN)     guest writes mark pages written
//
// Only libftsync/src/qemu/ speaks QMP. Nothing here prints: messages go to
// the injected Logger; failures come back as Status with the cause (and,
// where QEMU said something, QEMU's words).
#ifndef FTSYNC_QEMU_H_
#define FTSYNC_QEMU_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/hypervisor.h"
#include "ftsync/linux_dirty_tracker.h"
#include "ftsync/logger.h"
#include "ftsync/status.h"

namespace ftsync {

// Everything needed to start a protected QEMU. A restore on the backup uses
// the same QemuLaunch with ram_path pointing at the replica's memory.img.
struct QemuLaunch {
  // The emulator. Debian package qemu-system-x86.
  std::string qemu_binary = "/usr/bin/qemu-system-x86_64";
  // QEMU's machine type. A versioned type ("pc-q35-7.2") keeps the device
  // model identical between the primary's QEMU and a restored one even if
  // their QEMU builds differ; more machine properties can follow in
  // extra_args ("-machine", "vmport=off,usb=off").
  std::string machine = "q35";
  // Guest RAM in bytes; a positive multiple of the page size (4096).
  uint64_t ram_bytes = uint64_t{256} << 20;
  // The guest-RAM file (required), a regular file on a filesystem that
  // supports shared mappings and userfaultfd write-protect (tmpfs such as
  // /dev/shm is the tested case; ext4 works too). Launch creates it with
  // ram_bytes bytes if it is missing; an existing file must have exactly
  // ram_bytes bytes (its contents are the guest's memory: a replica's
  // memory.img on restore). Never deleted by this library.
  std::string ram_path;
  // The QMP unix socket QEMU listens on (required; < 108 bytes). A stale
  // socket file at this path is replaced.
  std::string qmp_socket;
  // When true (the default), QEMU runs with preload_library, which must
  // exist, and Launch fails unless the guest RAM was registered for dirty
  // tracking. When false QEMU runs plain: the domain can suspend, resume,
  // read frames and save/restore state, but has no dirty log.
  bool dirty_tracking = true;
  // Path of the preload shared object (libftsync_qemu_preload.so).
  std::string preload_library;
  // File receiving QEMU's stdout and stderr (appended). Empty: discarded,
  // and start-up errors cannot quote QEMU.
  std::string log_path;
  // Appended to the command line: -kernel, -initrd, -append, -smp,
  // -accel, -serial, -netdev/-device ... Must not add another memory
  // backend for the guest RAM or change ram0's share=on. Refused (they
  // would defeat the dirty log): -daemonize (the forked QEMU loses the
  // registration), virtio-balloon and virtio-mem (they discard guest RAM
  // pages without writing them).
  std::vector<std::string> extra_args;
  // Start paused, waiting for a migration stream (-S -incoming defer); see
  // QemuDomain::RestoreState and QemuDomain::Restore.
  bool incoming = false;
  // How long Launch waits for QMP and the preload's report.
  int start_timeout_ms = 30000;
  // Sends QEMU SIGKILL when the thread that called Launch exits
  // (PR_SET_PDEATHSIG): for tests, so a crashed test leaves no QEMU behind.
  // Leave false in a daemon whose launching thread may end first.
  bool kill_with_parent = false;
};

// QEMU's full argv (argv[0] is qemu_binary):
//   -machine MACHINE,memory-backend=ram0
//   -object memory-backend-file,id=ram0,size=SIZE,mem-path=RAM,share=on
//   -qmp unix:SOCKET,server=on,wait=off
//   -display none -vga none -nodefaults -no-user-config
//   [-S -incoming defer] EXTRA...
// Commas in paths are doubled, as QEMU's option syntax requires. Does not
// validate; Launch does.
std::vector<std::string> BuildQemuArgv(const QemuLaunch& launch);

// One QMP connection. Not thread-safe: one caller at a time. QEMU 7.2
// serves one client per QMP socket, so a QemuProcess and a QemuDomain
// attached to it share its client.
class QmpClient {
 public:
  // Default per-command timeout.
  static constexpr int kDefaultTimeoutMs = 10000;

  // Effect on success: connects to the unix socket, reads the greeting and
  // negotiates capabilities (qmp_capabilities), all within timeout_ms.
  // On failure: kNotFound when nothing listens at the path (no socket or
  // connection refused) -- a caller waiting for QEMU to start retries on
  // it; kIoError when QMP does not answer in time ("QMP not answering");
  // kPeerGone when QEMU closes the connection; kProtocol for a reply that
  // is not QMP.
  static Result<std::unique_ptr<QmpClient>> Connect(const std::string& path,
                                                    int timeout_ms);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs `command` with `arguments` (an object, or null for none) and
  // returns its "return" member. Asynchronous events that arrive meanwhile
  // are queued (TakeEvents). timeout_ms < 0 means kDefaultTimeoutMs.
  // On failure: QEMU's error as a Status whose context is
  // "QMP COMMAND: CLASS: DESC" -- CommandNotFound -> kNotSupported,
  // DeviceNotFound -> kNotFound, others -> kFailedPrecondition; kIoError
  // when no answer comes in time (a late answer is discarded later);
  // kPeerGone when the connection closed (QEMU exited).
  Result<nlohmann::json> Execute(const std::string& command,
                                 const nlohmann::json& arguments = nullptr,
                                 int timeout_ms = -1);

  // Hands `fd` to QEMU under `name` (QMP getfd, the descriptor travelling
  // as SCM_RIGHTS with the command); QEMU then owns a duplicate, used by a
  // later "fd:NAME" URI. The caller keeps and still owns `fd`. A previous
  // descriptor of the same name is replaced. Errors as Execute.
  Status SendFd(const std::string& name, int fd, int timeout_ms = -1);

  // Returns and clears the queued events, oldest first (at most the newest
  // kMaxQueuedEvents are kept).
  static constexpr size_t kMaxQueuedEvents = 1024;
  std::vector<nlohmann::json> TakeEvents();

  // The greeting's "QMP" object (version, capabilities).
  const nlohmann::json& greeting() const { return greeting_; }

 private:
  explicit QmpClient(int fd) : fd_(fd) {}
  // Sends one command (with an optional descriptor) and waits for the
  // answer carrying its id.
  Result<nlohmann::json> Call(const std::string& command,
                              const nlohmann::json& arguments, int pass_fd,
                              int timeout_ms);
  Status SendBytes(const std::string& bytes, int pass_fd);
  // Reads the next JSON message into *out, waiting until deadline_ns.
  Status ReadMessage(uint64_t deadline_ns, nlohmann::json* out,
                     const std::string& what);

  int fd_;
  uint64_t next_id_ = 1;
  std::string inbuf_;
  std::deque<nlohmann::json> events_;
  nlohmann::json greeting_;
  bool broken_ = false;  // the connection closed or lost framing
};

// A QEMU started by this process. Destroying it kills QEMU (SIGKILL) if it
// still runs and reaps it; the RAM file stays.
class QemuProcess {
 public:
  // Validates `launch`, prepares the RAM file, starts QEMU and waits (up
  // to start_timeout_ms) until QMP is negotiated and, with dirty_tracking,
  // the preload reported the registered RAM range.
  // On failure nothing keeps running (QEMU is killed and reaped):
  //  - kNotFound: the QEMU binary or the preload library does not exist
  //    (context names the path and how to get it), or the RAM file's
  //    directory is missing;
  //  - kInvalidArgument: empty paths, a socket path too long, a RAM size
  //    that is not a positive multiple of the page size, a RAM file of
  //    another size or not a regular file, a refused extra argument;
  //  - kNotSupported: the RAM file's filesystem cannot be mapped shared or
  //    write-tracked, or QEMU refused to start because the preload could
  //    not track the guest RAM (the preload's message: registration failed,
  //    file mapped without share=on, ...);
  //  - kFailedPrecondition: QEMU ran without the preload (the dynamic
  //    loader ignored it) or never mapped the RAM file writable and shared;
  //  - kIoError: QEMU exited during start-up (status and the tail of its
  //    log), or QMP did not answer in time.
  static Result<std::unique_ptr<QemuProcess>> Launch(const QemuLaunch& launch,
                                                     Logger* logger = nullptr);
  // As Launch, but with a caller-built argv (argv[0] is the binary that is
  // executed); for tests and experts. `launch` still supplies the RAM file,
  // socket, preload and timeouts that are checked and waited for.
  static Result<std::unique_ptr<QemuProcess>> LaunchArgv(
      const QemuLaunch& launch, std::vector<std::string> argv,
      Logger* logger = nullptr);

  ~QemuProcess();
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;

  pid_t pid() const { return pid_; }
  const QemuLaunch& launch() const { return launch_; }
  // The negotiated QMP connection (owned by this object).
  QmpClient& qmp() { return *qmp_; }
  // QEMU's registered mapping of the guest RAM ("ram ADDR LEN" from the
  // preload); 0 without dirty tracking. Its length is launch().ram_bytes.
  uint64_t ram_addr() const { return ram_addr_; }

  // Sends `sig` to QEMU. OK if it already exited.
  Status Kill(int sig);
  // Waits up to timeout_ms (<0: forever) for QEMU to exit and returns its
  // wait status (see waitpid). kBusy when it still runs at the deadline.
  Result<int> WaitForExit(int timeout_ms);
  // True once QEMU has exited (reaps it without blocking).
  bool Exited();
  // The last max_bytes of what QEMU wrote to its log during this run, or
  // "" without a log.
  std::string LogTail(size_t max_bytes = 2048) const;

 private:
  QemuProcess() = default;
  Status Start(std::vector<std::string> argv);
  void ReadReport(int fd, std::string* pending);
  Status WaitUntilReady(int report_fd);
  // Kills and reaps QEMU and explains why it did not start: the preload's
  // message, QEMU's exit status and log, or `cause`.
  Status StartupFailure(Status cause);
  // SIGKILL, waitpid, remove the socket QEMU left behind. Idempotent.
  void KillAndReap();

  QemuLaunch launch_;
  Logger* logger_ = nullptr;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  uint64_t ram_addr_ = 0;
  uint64_t log_offset_ = 0;
  std::string preload_error_;  // "error ..." line from the preload
  bool preload_loaded_ = false;
  std::unique_ptr<QmpClient> qmp_;
};

struct QemuDomainOptions {
  // Timeout of ordinary QMP commands (stop, cont, query-*).
  int qmp_timeout_ms = QmpClient::kDefaultTimeoutMs;
  // Longest a SaveState / RestoreState may take.
  int state_timeout_ms = 30000;
  Logger* logger = nullptr;  // nullptr: NullLogger()
};

// A QEMU this process did not start (for example one ftd adopted), as
// QemuDomain::Attach needs it.
struct QemuTarget {
  pid_t pid = 0;
  std::string qmp_socket;  // no other client may be connected
  std::string ram_path;
  uint64_t ram_bytes = 0;
  // QEMU's registered mapping of the RAM (the preload's "ram ADDR LEN");
  // 0: no dirty log.
  uint64_t ram_addr = 0;
};

// The Domain seam over a QEMU. Used from one thread at a time (the
// Checkpointer's); SaveState/RestoreState use a helper thread internally.
//
// Memory: FrameCount() = ram_bytes / 4096; frame n is bytes
// [n*4096, (n+1)*4096) of the RAM file, read through this process's
// read-only MAP_SHARED mapping (so reads see the guest's writes at once).
//
// Dirty log: a PagemapDirtyTracker over QEMU's registered mapping. It sees
// every write QEMU's vCPUs and device models make through that mapping
// (vhost-user / virtiofsd writes would bypass it: do not use them).
// EnableDirtyLog starts from a clean log (fetch-and-clear once): writes
// before it are covered by epoch 0's full pass. Redirty()'s frames and,
// after a failed scan, every frame are merged into the next fetch.
//
// Suspend/Resume: QMP stop / cont (cont also resumes from the postmigrate
// state a SaveState leaves behind).
//
// State: migration with capability x-ignore-shared (the shared RAM is not
// in the stream), into a pipe handed over with getfd: CPU and device state
// only, ~300 KB.
//
// Measured under TCG (QEMU 7.2, 2 cores, 256 MiB guest): stop ~0.5 ms,
// cont ~0.4 ms, FetchAndClearDirty ~0.25 ms, SaveState ~3 ms; a whole
// paused epoch 4-9 ms while the guest boots (median 1000 dirty pages per
// 100 ms epoch), ~4 ms once it idles (~25 pages).
class QemuDomain : public Domain {
 public:
  // Attaches to `process` (not owned; must outlive the domain), sharing its
  // QMP client. Dirty logging is available when the process was launched
  // with dirty_tracking.
  // On failure: kIoError / kNoSpace when the RAM file cannot be mapped;
  // the PagemapDirtyTracker's error when QEMU's pagemap cannot be opened.
  static Result<std::unique_ptr<QemuDomain>> Attach(
      QemuProcess* process, QemuDomainOptions options = {});
  // Attaches to a QEMU described by `target`, with a QMP connection of its
  // own. Errors as above, plus QmpClient::Connect's; kInvalidArgument when
  // the RAM file is smaller than ram_bytes or the size is not a multiple of
  // the page size.
  static Result<std::unique_ptr<QemuDomain>> Attach(
      const QemuTarget& target, QemuDomainOptions options = {});

  // A QEMU restored from a replica. `domain` uses `process`; destroy the
  // domain first (member order does).
  struct Restored {
    std::unique_ptr<QemuProcess> process;
    std::unique_ptr<QemuDomain> domain;
  };
  // The backup's failover: starts QEMU with `launch`'s command line, guest
  // RAM on `replica_ram` (used in place: the restored guest writes into
  // it), -S -incoming defer; loads `state` (from SaveState of a domain of
  // the same command line) with migrate-incoming; then resumes with cont.
  // On success the guest runs on from the checkpoint.
  // On failure QEMU is killed; errors as Launch and RestoreState.
  static Result<Restored> Restore(QemuLaunch launch,
                                  const std::string& replica_ram,
                                  std::span<const uint8_t> state,
                                  QemuDomainOptions options = {});

  ~QemuDomain() override;

  std::string Name() const override;
  size_t PageSize() const override { return page_size_; }
  uint64_t FrameCount() const override { return frames_; }

  // kFailedPrecondition without a registered mapping (dirty_tracking off).
  Status EnableDirtyLog() override;
  Status DisableDirtyLog() override;
  // kFailedPrecondition unless the log is on. On a scan failure every
  // frame is reported by the next successful fetch.
  Status FetchAndClearDirty(DirtyBitmap* out) override;
  // kInvalidArgument (nothing recorded) for a pfn >= FrameCount().
  Status Redirty(std::span<const uint64_t> pfns) override;

  // Speculative transfer (hypervisor.h): both supported when QEMU runs
  // with the preload (dirty tracking); false / kNotSupported otherwise.
  bool SupportsPeekDirty() const override { return tracker_ != nullptr; }
  bool SupportsRearmDirty() const override { return tracker_ != nullptr; }
  // A PAGEMAP_SCAN that only reads the written state, merged with the
  // pending Redirty() frames (all frames after a failed fetch).
  // kFailedPrecondition unless the log is on.
  Status PeekDirty(DirtyBitmap* out) override;
  // Write-protects the listed pages again with PAGEMAP_SCAN (one call per
  // run of consecutive pfns once sorted) and drops them from the pending
  // Redirty() frames. On a scan failure every listed frame is put back
  // as by Redirty, so none is lost. kFailedPrecondition unless the log is
  // on; kInvalidArgument (nothing changed) for a pfn >= FrameCount().
  Status RearmDirty(std::span<const uint64_t> pfns) override;

  // QMP stop; returns once the vCPUs are stopped.
  Status Suspend() override;
  // QMP cont.
  Status Resume() override;

  // memcpy from the RAM file; errors[i] = EINVAL for pfn >= FrameCount().
  // kInvalidArgument when dst is null or the spans' sizes differ.
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                    std::span<int> errors) override;

  // Requires a suspended domain (kFailedPrecondition otherwise). Sets
  // x-ignore-shared on (once), passes a pipe's write end with getfd,
  // migrates to fd:NAME and reads the pipe to end of file while polling
  // query-migrate. Leaves QEMU in the postmigrate state (Resume continues).
  // On failure: QEMU's error-desc for a failed migration (kIoError),
  // kIoError on timeout (the migration is cancelled).
  Result<std::vector<uint8_t>> SaveState() override;
  // Requires a QEMU started with incoming = true that has not loaded a
  // state yet (kFailedPrecondition otherwise: a running QEMU cannot load a
  // state; use Restore). Sets x-ignore-shared, feeds `state` through a
  // pipe to migrate-incoming fd:NAME and waits until it is loaded. The
  // guest stays paused: Resume starts it. On failure QEMU usually exits
  // ("load of migration failed"); the error quotes its log when known.
  Status RestoreState(std::span<const uint8_t> state) override;

  // QMP query-status "status": "running", "paused", "postmigrate",
  // "inmigrate", ...
  Result<std::string> QueryStatus();
  QmpClient& qmp() { return *qmp_; }
  pid_t pid() const { return pid_; }

 private:
  QemuDomain() = default;
  Status Init(const QemuTarget& target);
  Status EnsureIgnoreShared();
  Status MigrationError(const std::string& what);

  QemuDomainOptions opts_;
  QemuProcess* process_ = nullptr;       // when attached to one
  std::unique_ptr<QmpClient> own_qmp_;   // when attached by target
  QmpClient* qmp_ = nullptr;
  pid_t pid_ = 0;
  std::string ram_path_;
  size_t page_size_ = 4096;
  uint64_t frames_ = 0;
  uint64_t ram_addr_ = 0;
  const uint8_t* ram_ = nullptr;  // read-only mapping of the RAM file
  size_t ram_len_ = 0;
  bool suspended_ = false;
  bool ignore_shared_set_ = false;
  bool log_enabled_ = false;
  bool redirty_all_ = false;
  DirtyBitmap redirty_;
  DirtyBitmap scan_;
  std::vector<uint64_t> rearm_;  // RearmDirty's sorted pfns
  std::unique_ptr<PagemapDirtyTracker> tracker_;
};

}  // namespace ftsync

#endif  // FTSYNC_QEMU_H_
