// ftsync: QemuDomain's CPU/device state -- save to and load from a pipe
// with QEMU's migration, RAM left out (x-ignore-shared) -- and Restore.
//
// Save (source, guest stopped):            Load (QEMU started -S -incoming defer):
//   getfd NAME  <- pipe write end            getfd NAME <- pipe read end
//   migrate uri=fd:NAME                      migrate-incoming uri=fd:NAME
//   drain the read end to EOF (thread)       feed the state to the write end (thread)
//   query-migrate: completed | failed        query-status: paused (loaded) | QEMU exits
//   QEMU is now "postmigrate"; cont runs it  cont runs it
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "ftsync/qemu.h"
#include "qemu/qemu_sys.h"

namespace ftsync {

using internal::DeadlineNs;
using internal::MakePipe;
using internal::PipeDrainer;
using internal::PipeFeeder;
using internal::RemainingMs;
using internal::UniqueFd;
using json = nlohmann::json;

namespace {

constexpr const char* kSaveFdName = "ftsync-state-out";
constexpr const char* kLoadFdName = "ftsync-state-in";
// The state (~300 KB) fits in one pipe buffer of this size, so QEMU's
// migration thread rarely waits for the reader.
constexpr int kPipeBytes = 1 << 20;

void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string StringMember(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace

Status QemuDomain::EnsureIgnoreShared() {
  if (ignore_shared_set_) return Status::OK();
  json caps = {
      {"capabilities", json::array({{{"capability", "x-ignore-shared"}, {"state", true}}})}};
  Result<json> r = qmp_->Execute("migrate-set-capabilities", caps, opts_.qmp_timeout_ms);
  if (!r.ok()) return r.status().Annotate(Name() + ": enable x-ignore-shared");
  ignore_shared_set_ = true;
  return Status::OK();
}

// A failed migration, in QEMU's words when it has any.
Status QemuDomain::MigrationError(const std::string& what) {
  std::string detail = "no answer from QEMU";
  Result<json> q = qmp_->Execute("query-migrate", nullptr, 1000);
  if (q.ok()) {
    std::string status = StringMember(*q, "status");
    std::string desc = StringMember(*q, "error-desc");
    detail = "migration " + (status.empty() ? std::string("status unknown") : status);
    if (!desc.empty()) detail += ": " + desc;
  }
  if (process_ != nullptr) {
    if (process_->Exited()) detail = "QEMU exited";
    std::string log = process_->LogTail(800);
    while (!log.empty() && log.back() == '\n') log.pop_back();
    if (!log.empty()) detail += "; QEMU's log ends: " + log;
  }
  return Status(Errc::kIoError, Name() + ": " + what + ": " + detail);
}

Result<std::vector<uint8_t>> QemuDomain::SaveState() {
  if (!suspended_) {
    return Status(Errc::kFailedPrecondition, Name() + ": SaveState needs a suspended domain");
  }
  FTSYNC_RETURN_IF_ERROR(EnsureIgnoreShared());
  const uint64_t deadline = DeadlineNs(opts_.state_timeout_ms);
  UniqueFd rd, wr;
  FTSYNC_RETURN_IF_ERROR(MakePipe(&rd, &wr));
  (void)fcntl(wr.get(), F_SETPIPE_SZ, kPipeBytes);  // an optimisation only
  FTSYNC_RETURN_IF_ERROR(qmp_->SendFd(kSaveFdName, wr.get(), opts_.qmp_timeout_ms)
                             .Annotate(Name() + ": pass the state pipe"));
  wr.Reset();  // QEMU holds the only write end: its close is our end of file
  PipeDrainer drain(std::move(rd));
  Result<json> m =
      qmp_->Execute("migrate", {{"uri", std::string("fd:") + kSaveFdName}}, opts_.qmp_timeout_ms);
  if (!m.ok()) {
    (void)qmp_->Execute("closefd", {{"fdname", kSaveFdName}}, 1000);
    return m.status().Annotate(Name() + ": save state");
  }
  if (!drain.WaitDone(deadline)) {
    (void)qmp_->Execute("migrate_cancel", nullptr, 1000);
    return Status(Errc::kIoError, Name() + ": state save did not finish within " +
                                      std::to_string(opts_.state_timeout_ms) + " ms");
  }
  // End of file: QEMU closed the stream. Its status says whether all of
  // the state is in it.
  for (;;) {
    Result<json> q = qmp_->Execute("query-migrate", nullptr, opts_.qmp_timeout_ms);
    if (!q.ok()) return q.status().Annotate(Name() + ": save state");
    std::string status = StringMember(*q, "status");
    if (status == "completed") break;
    if (status == "failed" || status == "cancelled" || status == "cancelling") {
      return MigrationError("save state");
    }
    if (RemainingMs(deadline) == 0) {
      return Status(Errc::kIoError, Name() + ": state save still '" + status + "' after " +
                                        std::to_string(opts_.state_timeout_ms) + " ms");
    }
    SleepMs(1);
  }
  Result<std::vector<uint8_t>> data = drain.Take();
  if (!data.ok()) return data.status().Annotate(Name() + ": save state");
  if (data->empty()) return Status(Errc::kIoError, Name() + ": QEMU saved an empty state");
  return data;
}

Status QemuDomain::RestoreState(std::span<const uint8_t> state) {
  Result<std::string> st = QueryStatus();
  if (!st.ok()) return st.status();
  if (*st != "inmigrate") {
    return Status(Errc::kFailedPrecondition,
                  Name() + " is '" + *st +
                      "', not waiting for a state: only a QEMU started with -incoming defer "
                      "(QemuLaunch::incoming) can load one; see QemuDomain::Restore");
  }
  if (state.empty()) return Status(Errc::kInvalidArgument, Name() + ": empty state");
  FTSYNC_RETURN_IF_ERROR(EnsureIgnoreShared());
  const uint64_t deadline = DeadlineNs(opts_.state_timeout_ms);
  UniqueFd rd, wr;
  FTSYNC_RETURN_IF_ERROR(MakePipe(&rd, &wr));
  FTSYNC_RETURN_IF_ERROR(qmp_->SendFd(kLoadFdName, rd.get(), opts_.qmp_timeout_ms)
                             .Annotate(Name() + ": pass the state pipe"));
  rd.Reset();
  PipeFeeder feed(std::move(wr), state);
  Result<json> m = qmp_->Execute("migrate-incoming", {{"uri", std::string("fd:") + kLoadFdName}},
                                 opts_.qmp_timeout_ms);
  if (!m.ok()) return m.status().Annotate(Name() + ": load state");
  for (;;) {
    // With -S the guest stays paused once the state is in; a load that
    // fails makes QEMU 7.2 exit ("load of migration failed").
    Result<std::string> now = QueryStatus();
    if (!now.ok()) return MigrationError("load state");
    if (*now == "paused" || *now == "running") break;
    Result<json> q = qmp_->Execute("query-migrate", nullptr, opts_.qmp_timeout_ms);
    if (!q.ok() || StringMember(*q, "status") == "failed") return MigrationError("load state");
    if (RemainingMs(deadline) == 0) {
      return Status(Errc::kIoError, Name() + ": state load did not finish within " +
                                        std::to_string(opts_.state_timeout_ms) + " ms");
    }
    SleepMs(2);
  }
  feed.Join();
  suspended_ = true;
  return Status::OK();
}

Result<QemuDomain::Restored> QemuDomain::Restore(QemuLaunch launch, const std::string& replica_ram,
                                                 std::span<const uint8_t> state,
                                                 QemuDomainOptions options) {
  launch.ram_path = replica_ram;
  launch.incoming = true;
  Restored out;
  Result<std::unique_ptr<QemuProcess>> p = QemuProcess::Launch(launch, options.logger);
  if (!p.ok()) return p.status().Annotate("restore from " + replica_ram);
  out.process = std::move(p).value();
  Result<std::unique_ptr<QemuDomain>> d = Attach(out.process.get(), options);
  if (!d.ok()) return d.status().Annotate("restore from " + replica_ram);
  out.domain = std::move(d).value();
  FTSYNC_RETURN_IF_ERROR(out.domain->RestoreState(state).Annotate("restore from " + replica_ram));
  FTSYNC_RETURN_IF_ERROR(out.domain->Resume().Annotate("restore from " + replica_ram));
  return out;
}

}  // namespace ftsync
