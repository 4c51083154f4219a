#include "testing/error_injecting_domain.h"

#include <charconv>
#include <cstdlib>
#include <iterator>
#include <utility>

namespace ftsync::testing {
namespace {

using Method = ErrorInjectingDomain::Method;

constexpr const char* kNames[] = {
    "EnableDirtyLog", "DisableDirtyLog", "FetchAndClearDirty",
    "Redirty",        "Suspend",         "Resume",
    "ReadFrames",     "SaveState",       "RestoreState",
    "PeekDirty",      "RearmDirty",
};
static_assert(std::size(kNames) == static_cast<size_t>(Method::kCount));

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status InjectedStatus(Method m, uint64_t n) {
  return Status(Errc::kIoError, std::string("injected fault: ") +
                                    ErrorInjectingDomain::MethodName(m) + " call " +
                                    std::to_string(n));
}

}  // namespace

const char* ErrorInjectingDomain::MethodName(Method m) {
  size_t i = static_cast<size_t>(m);
  return i < kMethods ? kNames[i] : "?";
}

Result<Method> ErrorInjectingDomain::ParseMethod(std::string_view name) {
  for (size_t i = 0; i < kMethods; ++i)
    if (name == kNames[i]) return static_cast<Method>(i);
  return Status(Errc::kInvalidArgument,
                "unknown Domain method '" + std::string(name) + "'");
}

ErrorInjectingDomain::ErrorInjectingDomain(Domain* target) : target_(target) {}

void ErrorInjectingDomain::FailNth(Method m, uint64_t n, Status s) {
  size_t i = static_cast<size_t>(m);
  if (i < kMethods) faults_[i].push_back({n, false, std::move(s)});
}

void ErrorInjectingDomain::FailAlwaysFrom(Method m, uint64_t n, Status s) {
  size_t i = static_cast<size_t>(m);
  if (i < kMethods) faults_[i].push_back({n, true, std::move(s)});
}

void ErrorInjectingDomain::ClearFaults() {
  for (auto& f : faults_) f.clear();
}

void ErrorInjectingDomain::Reset() { calls_.fill(0); }

Status ErrorInjectingDomain::ParseFaultSpec(std::string_view spec) {
  struct Parsed {
    Method m;
    uint64_t n;
    bool and_later;
  };
  std::vector<Parsed> parsed;
  const std::string whole(spec);
  if (!Trim(spec).empty()) {
    while (true) {
      size_t comma = spec.find(',');
      std::string_view item = Trim(spec.substr(0, comma));
      auto bad = [&](const std::string& why) {
        return Status(Errc::kInvalidArgument, "fault spec '" + whole + "': item '" +
                                                  std::string(item) + "': " + why);
      };
      size_t colon = item.find(':');
      if (colon == std::string_view::npos) return bad("expected Method:N");
      Result<Method> m = ParseMethod(item.substr(0, colon));
      if (!m.ok()) return bad(m.status().context());
      std::string_view num = item.substr(colon + 1);
      bool and_later = !num.empty() && num.back() == '+';
      if (and_later) num.remove_suffix(1);
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
      if (num.empty() || ec != std::errc() || end != num.data() + num.size() || n == 0)
        return bad("call number must be an integer >= 1");
      parsed.push_back({*m, n, and_later});
      if (comma == std::string_view::npos) break;
      spec.remove_prefix(comma + 1);
    }
  }
  for (const Parsed& p : parsed) {
    if (p.and_later) {
      FailAlwaysFrom(p.m, p.n, InjectedStatus(p.m, p.n));
    } else {
      FailNth(p.m, p.n, InjectedStatus(p.m, p.n));
    }
  }
  return Status::OK();
}

Status ErrorInjectingDomain::ArmFromEnvironment(const char* var) {
  const char* spec = std::getenv(var);
  if (spec == nullptr) return Status::OK();
  return ParseFaultSpec(spec).Annotate(var);
}

uint64_t ErrorInjectingDomain::calls(Method m) const {
  size_t i = static_cast<size_t>(m);
  return i < kMethods ? calls_[i] : 0;
}

uint64_t ErrorInjectingDomain::injected(Method m) const {
  size_t i = static_cast<size_t>(m);
  return i < kMethods ? injected_[i] : 0;
}

bool ErrorInjectingDomain::Intercept(Method m, Status* s) {
  size_t i = static_cast<size_t>(m);
  uint64_t n = ++calls_[i];
  for (const Fault& f : faults_[i]) {
    if (n == f.n || (f.and_later && n > f.n)) {
      ++injected_[i];
      *s = f.status;
      return true;
    }
  }
  return false;
}

Status ErrorInjectingDomain::EnableDirtyLog() {
  Status s;
  if (Intercept(Method::kEnableDirtyLog, &s)) return s;
  return target_->EnableDirtyLog();
}

Status ErrorInjectingDomain::DisableDirtyLog() {
  Status s;
  if (Intercept(Method::kDisableDirtyLog, &s)) return s;
  return target_->DisableDirtyLog();
}

Status ErrorInjectingDomain::FetchAndClearDirty(DirtyBitmap* out) {
  Status s;
  if (Intercept(Method::kFetchAndClearDirty, &s)) return s;
  return target_->FetchAndClearDirty(out);
}

Status ErrorInjectingDomain::Redirty(std::span<const uint64_t> pfns) {
  Status s;
  if (Intercept(Method::kRedirty, &s)) return s;
  return target_->Redirty(pfns);
}

Status ErrorInjectingDomain::PeekDirty(DirtyBitmap* out) {
  Status s;
  if (Intercept(Method::kPeekDirty, &s)) return s;
  return target_->PeekDirty(out);
}

Status ErrorInjectingDomain::RearmDirty(std::span<const uint64_t> pfns) {
  Status s;
  if (Intercept(Method::kRearmDirty, &s)) return s;
  return target_->RearmDirty(pfns);
}

Status ErrorInjectingDomain::Suspend() {
  Status s;
  if (Intercept(Method::kSuspend, &s)) return s;
  return target_->Suspend();
}

Status ErrorInjectingDomain::Resume() {
  Status s;
  if (Intercept(Method::kResume, &s)) return s;
  return target_->Resume();
}

Status ErrorInjectingDomain::ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                                        std::span<int> errors) {
  Status s;
  if (Intercept(Method::kReadFrames, &s)) return s;
  return target_->ReadFrames(pfns, dst, errors);
}

Result<std::vector<uint8_t>> ErrorInjectingDomain::SaveState() {
  Status s;
  if (Intercept(Method::kSaveState, &s)) {
    // A Result must hold a value or a non-OK status.
    if (s.ok()) return std::vector<uint8_t>();
    return s;
  }
  return target_->SaveState();
}

Status ErrorInjectingDomain::RestoreState(std::span<const uint8_t> state) {
  Status s;
  if (Intercept(Method::kRestoreState, &s)) return s;
  return target_->RestoreState(state);
}

}  // namespace ftsync::testing
