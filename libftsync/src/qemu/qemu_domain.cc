// ftsync: QemuDomain -- memory, dirty log and suspend/resume. State save
// and restore are in qemu_state.cc.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ftsync/qemu.h"
#include "qemu/qemu_sys.h"

namespace ftsync {

using internal::UniqueFd;

namespace {

// Sets every bit of `b` (size frames).
void SetAll(DirtyBitmap* b, uint64_t frames) {
  uint64_t* w = b->words();
  for (size_t i = 0; i < b->word_count(); ++i) w[i] = ~uint64_t{0};
  if (frames % 64 != 0) w[b->word_count() - 1] = (uint64_t{1} << (frames % 64)) - 1;
}

}  // namespace

Result<std::unique_ptr<QemuDomain>> QemuDomain::Attach(QemuProcess* process,
                                                       QemuDomainOptions options) {
  if (process == nullptr) return Status(Errc::kInvalidArgument, "QemuDomain: no process");
  if (process->Exited()) {
    return Status(Errc::kNotFound, "QEMU pid " + std::to_string(process->pid()) + " has exited");
  }
  std::unique_ptr<QemuDomain> d(new QemuDomain);
  d->opts_ = options;
  d->process_ = process;
  d->qmp_ = &process->qmp();
  QemuTarget t;
  t.pid = process->pid();
  t.qmp_socket = process->launch().qmp_socket;
  t.ram_path = process->launch().ram_path;
  t.ram_bytes = process->launch().ram_bytes;
  t.ram_addr = process->ram_addr();
  FTSYNC_RETURN_IF_ERROR(d->Init(t));
  return d;
}

Result<std::unique_ptr<QemuDomain>> QemuDomain::Attach(const QemuTarget& target,
                                                       QemuDomainOptions options) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (target.pid <= 0 || target.ram_bytes == 0 || target.ram_bytes % page != 0) {
    return Status(Errc::kInvalidArgument,
                  "QemuTarget: pid " + std::to_string(target.pid) + ", guest RAM size " +
                      std::to_string(target.ram_bytes) +
                      " (needs a pid and a positive multiple of the page size)");
  }
  std::unique_ptr<QemuDomain> d(new QemuDomain);
  d->opts_ = options;
  Result<std::unique_ptr<QmpClient>> c =
      QmpClient::Connect(target.qmp_socket, options.qmp_timeout_ms);
  if (!c.ok()) return c.status();
  d->own_qmp_ = std::move(c).value();
  d->qmp_ = d->own_qmp_.get();
  FTSYNC_RETURN_IF_ERROR(d->Init(target));
  return d;
}

Status QemuDomain::Init(const QemuTarget& t) {
  if (opts_.logger == nullptr) opts_.logger = NullLogger();
  pid_ = t.pid;
  ram_path_ = t.ram_path;
  page_size_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (t.ram_bytes == 0 || t.ram_bytes % page_size_ != 0) {
    return Status(Errc::kInvalidArgument, "guest RAM size " + std::to_string(t.ram_bytes) +
                                              " is not a positive multiple of the page size");
  }
  frames_ = t.ram_bytes / page_size_;
  UniqueFd fd(open(t.ram_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(errno, "open guest RAM file " + t.ram_path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Status::FromErrno(errno, "fstat " + t.ram_path);
  if (static_cast<uint64_t>(st.st_size) < t.ram_bytes) {
    return Status(Errc::kInvalidArgument, "guest RAM file " + t.ram_path + " has " +
                                              std::to_string(st.st_size) + " bytes, fewer than " +
                                              std::to_string(t.ram_bytes));
  }
  void* m = mmap(nullptr, t.ram_bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (m == MAP_FAILED) return Status::FromErrno(errno, "map guest RAM file " + t.ram_path);
  ram_ = static_cast<const uint8_t*>(m);
  ram_len_ = t.ram_bytes;
  redirty_.Resize(frames_);
  ram_addr_ = t.ram_addr;
  if (ram_addr_ != 0) {
    auto tr = PagemapDirtyTracker::Open(pid_, ram_addr_, t.ram_bytes);
    if (!tr.ok()) return tr.status().Annotate("dirty log of QEMU pid " + std::to_string(pid_));
    tracker_ = std::move(tr).value();
  }
  return Status::OK();
}

QemuDomain::~QemuDomain() {
  if (ram_ != nullptr) munmap(const_cast<uint8_t*>(ram_), ram_len_);
}

std::string QemuDomain::Name() const { return "qemu:pid " + std::to_string(pid_); }

Status QemuDomain::EnableDirtyLog() {
  if (!tracker_) {
    return Status(Errc::kFailedPrecondition,
                  Name() + ": no dirty log (QEMU was started without the preload library)");
  }
  if (log_enabled_) return Status::OK();
  // Start from a clean log: what was written before is covered by the
  // caller's full pass (epoch 0) that follows.
  FTSYNC_RETURN_IF_ERROR(tracker_->FetchAndClear(&scan_).Annotate(Name() + ": start dirty log"));
  redirty_.ClearAll();
  redirty_all_ = false;
  log_enabled_ = true;
  return Status::OK();
}

Status QemuDomain::DisableDirtyLog() {
  // The registration lives in QEMU until it exits; with nobody clearing,
  // each page faults at most once more, then writes run at full speed.
  log_enabled_ = false;
  return Status::OK();
}

Status QemuDomain::FetchAndClearDirty(DirtyBitmap* out) {
  if (!log_enabled_) return Status(Errc::kFailedPrecondition, Name() + ": dirty log is off");
  if (out == nullptr) return Status(Errc::kInvalidArgument, "FetchAndClearDirty: null bitmap");
  Status s = tracker_->FetchAndClear(&scan_);
  if (!s.ok()) {
    // Some pages may already be protected again without having been
    // reported: report everything next time, so none is lost.
    redirty_all_ = true;
    return s.Annotate(Name() + ": harvest dirty log");
  }
  *out = scan_;
  out->Merge(redirty_);
  if (redirty_all_) SetAll(out, frames_);
  redirty_.ClearAll();
  redirty_all_ = false;
  return Status::OK();
}

Status QemuDomain::Redirty(std::span<const uint64_t> pfns) {
  for (uint64_t p : pfns) {
    if (p >= frames_) {
      return Status(Errc::kInvalidArgument, Name() + ": Redirty pfn " + std::to_string(p) +
                                                " >= frame count " + std::to_string(frames_));
    }
  }
  for (uint64_t p : pfns) redirty_.Set(p);
  return Status::OK();
}

Status QemuDomain::PeekDirty(DirtyBitmap* out) {
  if (!tracker_) return Domain::PeekDirty(out);
  if (!log_enabled_) return Status(Errc::kFailedPrecondition, Name() + ": dirty log is off");
  if (out == nullptr) return Status(Errc::kInvalidArgument, "PeekDirty: null bitmap");
  // A failed peek changes no page state, so nothing is lost.
  FTSYNC_RETURN_IF_ERROR(tracker_->Peek(&scan_).Annotate(Name() + ": peek dirty log"));
  *out = scan_;
  out->Merge(redirty_);
  if (redirty_all_) SetAll(out, frames_);
  return Status::OK();
}

Status QemuDomain::RearmDirty(std::span<const uint64_t> pfns) {
  if (!tracker_) return Domain::RearmDirty(pfns);
  if (!log_enabled_) return Status(Errc::kFailedPrecondition, Name() + ": dirty log is off");
  for (uint64_t p : pfns) {
    if (p >= frames_) {
      return Status(Errc::kInvalidArgument, Name() + ": RearmDirty pfn " + std::to_string(p) +
                                                " >= frame count " + std::to_string(frames_));
    }
  }
  rearm_.assign(pfns.begin(), pfns.end());
  if (!std::is_sorted(rearm_.begin(), rearm_.end())) std::sort(rearm_.begin(), rearm_.end());
  rearm_.erase(std::unique(rearm_.begin(), rearm_.end()), rearm_.end());
  Status s = tracker_->Rearm(rearm_);
  if (!s.ok()) {
    // A prefix of the runs may be write-protected again with their
    // written state dropped: report all of them at the next fetch.
    for (uint64_t p : rearm_) redirty_.Set(p);
    return s.Annotate(Name() + ": re-arm dirty log");
  }
  if (redirty_all_) {
    // The pending "everything" becomes explicit, so single frames can
    // leave it.
    SetAll(&redirty_, frames_);
    redirty_all_ = false;
  }
  for (uint64_t p : rearm_) redirty_.Clear(p);
  return Status::OK();
}

Status QemuDomain::Suspend() {
  Result<nlohmann::json> r = qmp_->Execute("stop", nullptr, opts_.qmp_timeout_ms);
  if (!r.ok()) return r.status().Annotate(Name());
  suspended_ = true;
  return Status::OK();
}

Status QemuDomain::Resume() {
  Result<nlohmann::json> r = qmp_->Execute("cont", nullptr, opts_.qmp_timeout_ms);
  if (!r.ok()) return r.status().Annotate(Name());
  suspended_ = false;
  return Status::OK();
}

Status QemuDomain::ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst, std::span<int> errors) {
  if (errors.size() != pfns.size()) {
    return Status(Errc::kInvalidArgument, "ReadFrames: errors has " +
                                              std::to_string(errors.size()) + " entries for " +
                                              std::to_string(pfns.size()) + " frames");
  }
  if (dst == nullptr && !pfns.empty()) {
    return Status(Errc::kInvalidArgument, "ReadFrames: null destination");
  }
  for (size_t i = 0; i < pfns.size(); ++i) {
    if (pfns[i] >= frames_) {
      errors[i] = EINVAL;
      continue;
    }
    std::memcpy(dst + i * page_size_, ram_ + pfns[i] * page_size_, page_size_);
    errors[i] = 0;
  }
  return Status::OK();
}

Result<std::string> QemuDomain::QueryStatus() {
  Result<nlohmann::json> r = qmp_->Execute("query-status", nullptr, opts_.qmp_timeout_ms);
  if (!r.ok()) return r.status().Annotate(Name());
  const nlohmann::json& j = *r;
  auto it = j.find("status");
  if (!j.is_object() || it == j.end() || !it->is_string()) {
    return Status(Errc::kProtocol,
                  Name() + ": query-status without a status: " +
                      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  return it->get<std::string>();
}

}  // namespace ftsync
