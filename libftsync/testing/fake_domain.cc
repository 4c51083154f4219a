#include "testing/fake_domain.h"

#include <cerrno>
#include <cstring>
#include <utility>

namespace ftsync::testing {
namespace {

// splitmix64: a tiny PRNG whose output is the same on every platform.
uint64_t SplitMix64(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void FillRandom(uint64_t* rng, uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t v = SplitMix64(rng);
    for (size_t b = 0; b < 8 && i + b < n; ++b) p[i + b] = uint8_t(v >> (8 * b));
  }
}

void Put32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(uint8_t(v >> (8 * i)));
}
void Put64(std::vector<uint8_t>* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(uint8_t(v >> (8 * i)));
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

uint64_t Fnv1a64(const uint8_t* p, size_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
  return h;
}

// State blob layout (all integers little-endian):
//   0   magic "FTFKSTAT"      8   u32 version (1)   12  u32 state length L
//   16  u64 frame count       24  u64 page size     32  L state bytes
//   32+L  u64 FNV-1a 64 of bytes [0, 32+L)
constexpr char kMagic[8] = {'F', 'T', 'F', 'K', 'S', 'T', 'A', 'T'};
constexpr uint32_t kBlobVersion = 1;
constexpr size_t kBlobHeader = 32;

class SharedDomain : public Domain {
 public:
  explicit SharedDomain(std::shared_ptr<FakeDomain> d) : d_(std::move(d)) {}
  std::string Name() const override { return d_->Name(); }
  size_t PageSize() const override { return d_->PageSize(); }
  uint64_t FrameCount() const override { return d_->FrameCount(); }
  Status EnableDirtyLog() override { return d_->EnableDirtyLog(); }
  Status DisableDirtyLog() override { return d_->DisableDirtyLog(); }
  Status FetchAndClearDirty(DirtyBitmap* out) override {
    return d_->FetchAndClearDirty(out);
  }
  Status Redirty(std::span<const uint64_t> pfns) override {
    return d_->Redirty(pfns);
  }
  bool SupportsPeekDirty() const override { return d_->SupportsPeekDirty(); }
  bool SupportsRearmDirty() const override { return d_->SupportsRearmDirty(); }
  Status PeekDirty(DirtyBitmap* out) override { return d_->PeekDirty(out); }
  Status RearmDirty(std::span<const uint64_t> pfns) override {
    return d_->RearmDirty(pfns);
  }
  Status Suspend() override { return d_->Suspend(); }
  Status Resume() override { return d_->Resume(); }
  Status ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                    std::span<int> errors) override {
    return d_->ReadFrames(pfns, dst, errors);
  }
  Result<std::vector<uint8_t>> SaveState() override { return d_->SaveState(); }
  Status RestoreState(std::span<const uint8_t> state) override {
    return d_->RestoreState(state);
  }

 private:
  std::shared_ptr<FakeDomain> d_;
};

}  // namespace

FakeDomain::FakeDomain(uint64_t frames, size_t page_size, std::string name,
                       uint64_t seed)
    : frames_(frames),
      page_size_(page_size),
      name_(std::move(name)),
      memory_(frames * page_size),
      state_(kStateSize, 0),
      dirty_(frames) {
  uint64_t rng = seed;
  FillRandom(&rng, memory_.data(), memory_.size());
  // Bytes 0..7 are the instruction counter, which starts at zero.
  FillRandom(&rng, state_.data() + 8, kStateSize - 8);
}

Status FakeDomain::EnableDirtyLog() {
  ++counters_.enable_dirty_log;
  if (!logging_) {
    dirty_.ClearAll();
    logging_ = true;
  }
  return Status::OK();
}

Status FakeDomain::DisableDirtyLog() {
  ++counters_.disable_dirty_log;
  logging_ = false;
  dirty_.ClearAll();
  return Status::OK();
}

Status FakeDomain::FetchAndClearDirty(DirtyBitmap* out) {
  ++counters_.fetch_and_clear_dirty;
  if (out == nullptr)
    return Status(Errc::kInvalidArgument, name_ + ": FetchAndClearDirty: null bitmap");
  if (!logging_)
    return Status(Errc::kFailedPrecondition,
                  name_ + ": FetchAndClearDirty: dirty logging is off");
  *out = dirty_;
  dirty_.ClearAll();
  return Status::OK();
}

Status FakeDomain::Redirty(std::span<const uint64_t> pfns) {
  ++counters_.redirty;
  if (!logging_)
    return Status(Errc::kFailedPrecondition, name_ + ": Redirty: dirty logging is off");
  for (uint64_t pfn : pfns) {
    if (pfn >= frames_)
      return Status(Errc::kInvalidArgument,
                    name_ + ": Redirty: pfn " + std::to_string(pfn) +
                        " >= frame count " + std::to_string(frames_));
  }
  for (uint64_t pfn : pfns) dirty_.Set(pfn);
  return Status::OK();
}

Status FakeDomain::PeekDirty(DirtyBitmap* out) {
  ++counters_.peek_dirty;
  if (!SupportsPeekDirty()) return Domain::PeekDirty(out);
  if (out == nullptr)
    return Status(Errc::kInvalidArgument, name_ + ": PeekDirty: null bitmap");
  if (!logging_)
    return Status(Errc::kFailedPrecondition, name_ + ": PeekDirty: dirty logging is off");
  *out = dirty_;
  return Status::OK();
}

Status FakeDomain::RearmDirty(std::span<const uint64_t> pfns) {
  ++counters_.rearm_dirty;
  if (!SupportsRearmDirty()) return Domain::RearmDirty(pfns);
  if (!logging_)
    return Status(Errc::kFailedPrecondition, name_ + ": RearmDirty: dirty logging is off");
  for (uint64_t pfn : pfns) {
    if (pfn >= frames_)
      return Status(Errc::kInvalidArgument,
                    name_ + ": RearmDirty: pfn " + std::to_string(pfn) +
                        " >= frame count " + std::to_string(frames_));
  }
  for (uint64_t pfn : pfns) dirty_.Clear(pfn);
  counters_.frames_rearmed += pfns.size();
  return Status::OK();
}

Status FakeDomain::Suspend() {
  ++counters_.suspend;
  if (suspended_)
    return Status(Errc::kFailedPrecondition, name_ + ": Suspend: already suspended");
  suspended_ = true;
  return Status::OK();
}

Status FakeDomain::Resume() {
  ++counters_.resume;
  if (!suspended_)
    return Status(Errc::kFailedPrecondition, name_ + ": Resume: not suspended");
  suspended_ = false;
  return Status::OK();
}

Status FakeDomain::ReadFrames(std::span<const uint64_t> pfns, uint8_t* dst,
                              std::span<int> errors) {
  ++counters_.read_frames;
  if (errors.size() != pfns.size())
    return Status(Errc::kInvalidArgument,
                  name_ + ": ReadFrames: " + std::to_string(errors.size()) +
                      " error slots for " + std::to_string(pfns.size()) + " frames");
  if (dst == nullptr && !pfns.empty())
    return Status(Errc::kInvalidArgument, name_ + ": ReadFrames: null destination");
  for (size_t i = 0; i < pfns.size(); ++i) {
    uint8_t* out = dst + i * page_size_;
    uint64_t pfn = pfns[i];
    if (pfn >= frames_) {
      errors[i] = EINVAL;
    } else if (unreadable_.count(pfn) != 0) {
      errors[i] = EFAULT;
    } else {
      std::memcpy(out, memory_.data() + pfn * page_size_, page_size_);
      errors[i] = 0;
      ++counters_.frames_read;
      continue;
    }
    std::memset(out, kPoisonByte, page_size_);
  }
  return Status::OK();
}

Result<std::vector<uint8_t>> FakeDomain::SaveState() {
  ++counters_.save_state;
  if (!suspended_)
    return Status(Errc::kFailedPrecondition, name_ + ": SaveState: domain is running");
  std::vector<uint8_t> blob(kMagic, kMagic + sizeof(kMagic));
  Put32(&blob, kBlobVersion);
  Put32(&blob, uint32_t(state_.size()));
  Put64(&blob, frames_);
  Put64(&blob, page_size_);
  blob.insert(blob.end(), state_.begin(), state_.end());
  Put64(&blob, Fnv1a64(blob.data(), blob.size()));
  return blob;
}

Status FakeDomain::RestoreState(std::span<const uint8_t> blob) {
  ++counters_.restore_state;
  auto bad = [&](const std::string& why) {
    return Status(Errc::kInvalidArgument, name_ + ": RestoreState: " + why);
  };
  const size_t want = kBlobHeader + kStateSize + 8;
  if (blob.size() != want)
    return bad("blob is " + std::to_string(blob.size()) + " bytes, expected " +
               std::to_string(want));
  const uint8_t* p = blob.data();
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) return bad("bad magic");
  if (Get64(p + want - 8) != Fnv1a64(p, want - 8)) return bad("checksum mismatch");
  if (Get32(p + 8) != kBlobVersion)
    return bad("unknown version " + std::to_string(Get32(p + 8)));
  if (Get32(p + 12) != kStateSize) return bad("bad state length");
  if (Get64(p + 16) != frames_ || Get64(p + 24) != page_size_)
    return bad("blob is from a domain of " + std::to_string(Get64(p + 16)) +
               " frames of " + std::to_string(Get64(p + 24)) + " bytes");
  std::memcpy(state_.data(), p + kBlobHeader, kStateSize);
  return Status::OK();
}

Status FakeDomain::CheckGuestWrite(uint64_t pfn, size_t offset, size_t len) {
  if (suspended_) {
    ++counters_.suspended_writes;
    return Status(Errc::kFailedPrecondition,
                  name_ + ": guest write to pfn " + std::to_string(pfn) +
                      " while suspended");
  }
  if (pfn >= frames_)
    return Status(Errc::kInvalidArgument,
                  name_ + ": guest write: pfn " + std::to_string(pfn) +
                      " >= frame count " + std::to_string(frames_));
  if (offset > page_size_ || len > page_size_ - offset)
    return Status(Errc::kInvalidArgument,
                  name_ + ": guest write of " + std::to_string(len) +
                      " bytes at offset " + std::to_string(offset) +
                      " overruns a page of " + std::to_string(page_size_));
  return Status::OK();
}

void FakeDomain::AfterGuestWrite(uint64_t pfn, size_t len) {
  if (logging_) dirty_.Set(pfn);
  ++counters_.pages_written;
  counters_.bytes_written += len;
  // The vCPU executed: bump the instruction counter and scramble one
  // register-like byte so saved states of different moments differ.
  uint64_t counter = state_counter() + 1;
  for (int i = 0; i < 8; ++i) state_[i] = uint8_t(counter >> (8 * i));
  uint64_t mix = counter ^ (pfn * 0x9E3779B97F4A7C15ull);
  state_[8 + counter % (kStateSize - 8)] ^= uint8_t(SplitMix64(&mix) | 1);
}

Status FakeDomain::Write(uint64_t pfn, size_t offset, std::span<const uint8_t> data) {
  FTSYNC_RETURN_IF_ERROR(CheckGuestWrite(pfn, offset, data.size()));
  if (data.empty()) return Status::OK();
  std::memcpy(memory_.data() + pfn * page_size_ + offset, data.data(), data.size());
  AfterGuestWrite(pfn, data.size());
  return Status::OK();
}

void FakeDomain::Fill(uint64_t pfn, uint8_t byte) {
  if (!CheckGuestWrite(pfn, 0, page_size_).ok()) return;
  std::memset(memory_.data() + pfn * page_size_, byte, page_size_);
  AfterGuestWrite(pfn, page_size_);
}

void FakeDomain::SetUnreadable(uint64_t pfn, bool unreadable) {
  if (pfn >= frames_) return;
  if (unreadable) {
    unreadable_.insert(pfn);
  } else {
    unreadable_.erase(pfn);
  }
}

std::span<const uint8_t> FakeDomain::Frame(uint64_t pfn) const {
  if (pfn >= frames_) return {};
  return {memory_.data() + pfn * page_size_, page_size_};
}

uint64_t FakeDomain::state_counter() const { return Get64(state_.data()); }

void FakeHypervisor::Add(const std::string& id, std::shared_ptr<FakeDomain> domain) {
  domains_[id] = std::move(domain);
}

std::shared_ptr<FakeDomain> FakeHypervisor::Get(const std::string& id) const {
  auto it = domains_.find(id);
  return it == domains_.end() ? nullptr : it->second;
}

Result<std::unique_ptr<Domain>> FakeHypervisor::OpenDomain(const std::string& id) {
  auto d = Get(id);
  if (d == nullptr)
    return Status(Errc::kNotFound, "no domain named '" + id + "' on fake hypervisor");
  return std::unique_ptr<Domain>(new SharedDomain(std::move(d)));
}

}  // namespace ftsync::testing
