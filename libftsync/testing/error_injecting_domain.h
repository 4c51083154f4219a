// ftsync testing: a Domain wrapper that fails chosen calls.
//
// ErrorInjectingDomain forwards every call to a target Domain, except the
// calls a test armed to fail: those return the armed Status without calling
// through, so the target's state is untouched (a failed FetchAndClearDirty
// leaves the dirty log as it was, as hypervisor.h requires).
//
// Calls are counted per method from construction or the last Reset(); the
// first call is number 1. Name(), PageSize() and FrameCount() cannot fail
// and are neither counted nor injectable.
//
// Faults can also be chosen by a spec string, for integration runs driven
// by an environment variable (FTSYNC_FAULT=ReadFrames:3):
//
//   spec  := ""  |  item ("," item)*
//   item  := Method ":" N        fail the N-th call (N >= 1)
//          | Method ":" N "+"    fail the N-th and every later call
//   Method is a Method enumerator without its k: EnableDirtyLog,
//   DisableDirtyLog, FetchAndClearDirty, Redirty, Suspend, Resume,
//   ReadFrames, SaveState, RestoreState, PeekDirty, RearmDirty. Spaces
//   around items are ignored.
//
// SupportsPeekDirty() and SupportsRearmDirty() forward to the target; they
// cannot fail and are not counted (arm PeekDirty/RearmDirty faults instead,
// e.g. FailAlwaysFrom(kPeekDirty, 1, kNotSupported) to imitate a backend
// without the feature behind a capability that says yes).
//
// Injected failures from a spec are kIoError "injected fault: <Method>
// call <N>".
#ifndef FTSYNC_TESTING_ERROR_INJECTING_DOMAIN_H_
#define FTSYNC_TESTING_ERROR_INJECTING_DOMAIN_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ftsync/dirty_bitmap.h"
#include "ftsync/hypervisor.h"
#include "ftsync/status.h"

namespace ftsync::testing {

class ErrorInjectingDomain : public Domain {
 public:
  enum class Method {
    kEnableDirtyLog,
    kDisableDirtyLog,
    kFetchAndClearDirty,
    kRedirty,
    kSuspend,
    kResume,
    kReadFrames,
    kSaveState,
    kRestoreState,
    kPeekDirty,
    kRearmDirty,
    kCount,  // number of methods, not a method
  };

  // "ReadFrames" for Method::kReadFrames; "?" for kCount or other values.
  static const char* MethodName(Method m);
  // The inverse of MethodName; kInvalidArgument for an unknown name.
  static Result<Method> ParseMethod(std::string_view name);

  // Wraps `target`, which must outlive this object. No fault is armed.
  explicit ErrorInjectingDomain(Domain* target);

  // Arms a fault: the n-th call of `m` (n >= 1) returns `s` instead of
  // calling through. Several faults may be armed on one method; an n already
  // passed never fires. `s` should be non-OK; an OK `s` makes the call
  // succeed without calling through (SaveState then returns an empty blob).
  void FailNth(Method m, uint64_t n, Status s);
  // Arms a fault on the n-th and every later call of `m`.
  void FailAlwaysFrom(Method m, uint64_t n, Status s);
  // Disarms every fault; call counts are kept.
  void ClearFaults();
  // Restarts every call count from zero (the next call is number 1 again);
  // armed faults are kept.
  void Reset();

  // Arms the faults of `spec` (grammar above), in addition to any already
  // armed. On error nothing is armed and the result is kInvalidArgument
  // naming the bad item.
  Status ParseFaultSpec(std::string_view spec);
  // ParseFaultSpec of the environment variable `var`; OK when it is unset.
  Status ArmFromEnvironment(const char* var = "FTSYNC_FAULT");

  // Calls of `m` since construction or Reset(), failed ones included.
  uint64_t calls(Method m) const;
  // Calls of `m` that returned an injected status (not reset by Reset()).
  uint64_t injected(Method m) const;

  // Domain.
  std::string Name() const override { return target_->Name(); }
  size_t PageSize() const override { return target_->PageSize(); }
  uint64_t FrameCount() const override { return target_->FrameCount(); }
  Status EnableDirtyLog() override;
  Status DisableDirtyLog() override;
  Status FetchAndClearDirty(DirtyBitmap* out) override;
  Status Redirty(std::span<const uint64_t> pfns) override;
  bool SupportsPeekDirty() const override { return target_->SupportsPeekDirty(); }
  bool SupportsRearmDirty() const override { return target_->SupportsRearmDirty(); }
  Status PeekDirty(DirtyBitmap* out) override;
  Status RearmDirty(std::span<const uint64_t> pfns) override;
  Status Suspend() override;
  Status Resume() override;
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                    std::span<int> errors) override;
  Result<std::vector<uint8_t>> SaveState() override;
  Status RestoreState(std::span<const uint8_t> state) override;

 private:
  static constexpr size_t kMethods = static_cast<size_t>(Method::kCount);

  struct Fault {
    uint64_t n;
    bool and_later;
    Status status;
  };

  // Counts a call of `m`; returns true and sets *s when it must fail.
  bool Intercept(Method m, Status* s);

  Domain* const target_;
  std::array<uint64_t, kMethods> calls_{};
  std::array<uint64_t, kMethods> injected_{};
  std::array<std::vector<Fault>, kMethods> faults_;
};

}  // namespace ftsync::testing

#endif  // FTSYNC_TESTING_ERROR_INJECTING_DOMAIN_H_
