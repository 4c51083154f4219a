#include "ftsync/status.h"

#include <cerrno>
#include <cstring>

namespace ftsync {
namespace {

class FtsyncCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "ftsync"; }
  std::string message(int ev) const override {
    return ErrcName(static_cast<Errc>(ev));
  }
};

}  // namespace

const std::error_category& ftsync_category() noexcept {
  static const FtsyncCategory category;
  return category;
}

const char* ErrcName(Errc e) noexcept {
  switch (e) {
    case Errc::kOk: return "OK";
    case Errc::kInvalidArgument: return "invalid argument";
    case Errc::kIoError: return "I/O error";
    case Errc::kCorruption: return "corruption";
    case Errc::kProtocol: return "protocol violation";
    case Errc::kVersion: return "version mismatch";
    case Errc::kNotSupported: return "not supported";
    case Errc::kNotFound: return "not found";
    case Errc::kPeerGone: return "peer gone";
    case Errc::kPeerRejected: return "rejected by peer";
    case Errc::kNoSpace: return "no space";
    case Errc::kBusy: return "busy";
    case Errc::kFailedPrecondition: return "failed precondition";
    case Errc::kInternal: return "internal error";
  }
  return "unknown error";
}

Status Status::FromErrno(int err, const std::string& context) {
  Errc code;
  switch (err) {
    case ENOSPC: case EDQUOT: case ENOMEM: code = Errc::kNoSpace; break;
    case EPIPE: case ECONNRESET: case ECONNABORTED: case ENOTCONN:
      code = Errc::kPeerGone; break;
    case ENOENT: case ESRCH: code = Errc::kNotFound; break;
    case EINVAL: case EBADF: code = Errc::kInvalidArgument; break;
    case ENOSYS: case EOPNOTSUPP: code = Errc::kNotSupported; break;
    case EAGAIN: case EBUSY: case EINTR: code = Errc::kBusy; break;
    default: code = Errc::kIoError; break;
  }
  return Status(code, context + ": " + std::strerror(err));
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = ErrcName(code_);
  if (!context_.empty()) s += ": " + context_;
  return s;
}

Status Status::Annotate(const std::string& prefix) const {
  if (ok()) return *this;
  return Status(code_, context_.empty() ? prefix : prefix + ": " + context_);
}

}  // namespace ftsync
