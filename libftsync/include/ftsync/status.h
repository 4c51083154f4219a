// ftsync: the one error convention of the library.
//
// Every fallible call returns a Status (or a Result<T>, which is a Status or
// a value). A Status carries a std::error_code in ftsync's own category plus
// a human-readable context string that names what went wrong ("PAGE_DATA
// record: pfn 0x1234 >= frame count 0x1000"). No exception crosses the
// library's API.
//
// Callers classify failures by predicate, never by integer sentinels:
//   IsCorruption()  the peer sent bytes that break the stream format;
//   IsFailover()    the peer is gone (EOF, broken pipe, missed heartbeats);
//   IsRetryable()   the same call may succeed later (transient resources).
#ifndef FTSYNC_STATUS_H_
#define FTSYNC_STATUS_H_

#include <string>
#include <system_error>
#include <utility>
#include <variant>

namespace ftsync {

// Error codes of the ftsync category. Values are stable: the C API
// (ftsync.h) returns their negation.
enum class Errc : int {
  kOk = 0,
  kInvalidArgument = 1,  // caller passed something the contract forbids
  kIoError = 2,          // a system call failed; context has errno text
  kCorruption = 3,       // malformed, truncated or corrupted stream data
  kProtocol = 4,         // well-formed records in an order the spec forbids
  kVersion = 5,          // peer speaks another stream version
  kNotSupported = 6,     // this kernel / hypervisor lacks a feature
  kNotFound = 7,         // no such domain / file / epoch
  kPeerGone = 8,         // EOF or broken connection: failover territory
  kPeerRejected = 9,     // backup sent NACK
  kNoSpace = 10,         // disk or buffer full
  kBusy = 11,            // resource temporarily unavailable
  kFailedPrecondition = 12,  // call made in the wrong state
  kInternal = 13,        // a bug in ftsync
};

const std::error_category& ftsync_category() noexcept;

inline std::error_code make_error_code(Errc e) noexcept {
  return {static_cast<int>(e), ftsync_category()};
}

// Returns the short name of an error code ("corruption", "peer gone", ...).
const char* ErrcName(Errc e) noexcept;

class [[nodiscard]] Status {
 public:
  // An OK status.
  Status() noexcept = default;
  Status(Errc code, std::string context)
      : code_(code), context_(std::move(context)) {}

  static Status OK() { return Status(); }
  // Maps an errno value to the nearest Errc (ENOSPC -> kNoSpace, EPIPE ->
  // kPeerGone, ...) and appends strerror to the context.
  static Status FromErrno(int err, const std::string& context);

  bool ok() const noexcept { return code_ == Errc::kOk; }
  Errc code() const noexcept { return code_; }
  std::error_code error_code() const noexcept { return make_error_code(code_); }
  const std::string& context() const noexcept { return context_; }

  bool IsCorruption() const noexcept {
    return code_ == Errc::kCorruption || code_ == Errc::kProtocol ||
           code_ == Errc::kVersion;
  }
  bool IsFailover() const noexcept { return code_ == Errc::kPeerGone; }
  bool IsRetryable() const noexcept { return code_ == Errc::kBusy; }

  // "corruption: PAGE_DATA record: bad checksum" or "OK".
  std::string ToString() const;

  // Returns a copy whose context is "prefix: old context".
  Status Annotate(const std::string& prefix) const;

 private:
  Errc code_ = Errc::kOk;
  std::string context_;
};

// A value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  Result(Errc code, std::string context) : v_(Status(code, std::move(context))) {}

  bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  // OK status when a value is held.
  Status status() const {
    return ok() ? Status() : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ftsync

namespace std {
template <>
struct is_error_code_enum<ftsync::Errc> : true_type {};
}  // namespace std

// Propagates a non-OK Status from an expression.
#define FTSYNC_RETURN_IF_ERROR(expr)          \
  do {                                        \
    ::ftsync::Status _st = (expr);            \
    if (!_st.ok()) return _st;                \
  } while (0)

#endif  // FTSYNC_STATUS_H_
