// The replica directory (see ftsync/replica.h for the contract):
//
//   DIR/current -> gen-<session>       symlink, replaced atomically by rename
//   DIR/gen-<session>/memory.img       guest memory, preallocated
//   DIR/gen-<session>/state.bin        CPU/device state of the same epoch
//   DIR/gen-<session>/replica.meta     fixed 512 bytes, rewritten in place
//
// A full synchronisation builds a new generation directory and switches
// `current` to it only when complete. Later epochs update the current
// generation: state to state.bin.new (the only step that needs new disk
// space), meta marked "applying", pages copied into the preallocated image,
// state renamed, meta marked complete.
#include "ftsync/replica.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace ftsync {
namespace fs = std::filesystem;
namespace {

constexpr size_t kMetaSize = 512;

Status WriteAll(int fd, const void* p, size_t n, const std::string& what) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  while (n) {
    ssize_t w = ::write(fd, b, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(errno, "write " + what);
    }
    b += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

std::string GenName(uint64_t session) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "gen-%016" PRIx64, session);
  return buf;
}

}  // namespace

struct ReplicaImage::Mapping {
  int fd = -1;
  uint8_t* addr = nullptr;
  uint64_t bytes = 0;
  ~Mapping() {
    if (addr) ::munmap(addr, bytes);
    if (fd >= 0) ::close(fd);
  }
};

ReplicaImage::ReplicaImage(std::string dir, bool durable) : dir_(std::move(dir)), durable_(durable) {}
ReplicaImage::~ReplicaImage() = default;

std::string ReplicaImage::memory_path() const { return dir_ + "/current/memory.img"; }
std::string ReplicaImage::state_path() const { return dir_ + "/current/state.bin"; }
std::optional<ReplicaInfo> ReplicaImage::LastComplete() const { return complete_; }

Result<std::unique_ptr<ReplicaImage>> ReplicaImage::Open(const std::string& dir, bool durable) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status(Errc::kIoError, "replica directory " + dir + ": " + ec.message());
  std::unique_ptr<ReplicaImage> r(new ReplicaImage(dir, durable));
  // Leftovers of an interrupted full synchronisation are never current.
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename();
    if (name.rfind("gen-", 0) == 0 && name.size() > 4 && name.substr(name.size() - 4) == ".new")
      fs::remove_all(e.path(), ec);
  }
  if (fs::is_symlink(dir + "/current")) FTSYNC_RETURN_IF_ERROR(r->LoadMeta());
  return r;
}

Status ReplicaImage::LoadMeta() {
  std::string path = dir_ + "/current/replica.meta";
  FILE* f = std::fopen(path.c_str(), "r");
  if (!f) return Status::FromErrno(errno, "open " + path);
  char line[128];
  ReplicaInfo info;
  int complete = 0, version = 0;
  uint64_t checksum = 0;
  while (std::fgets(line, sizeof line, f)) {
    std::sscanf(line, "ftsync-replica %d", &version);
    std::sscanf(line, "complete %d", &complete);
    std::sscanf(line, "session %" SCNx64, &info.session);
    std::sscanf(line, "epoch %" SCNu64, &info.epoch);
    std::sscanf(line, "page_size %" SCNu32, &info.page_size);
    std::sscanf(line, "frame_count %" SCNu64, &info.frame_count);
    std::sscanf(line, "state_checksum %" SCNx64, &checksum);
  }
  std::fclose(f);
  if (version != 1 || info.page_size == 0 || info.frame_count == 0)
    return Status(Errc::kCorruption, path + ": not an ftsync replica meta file (version 1)");
  if (!complete) {
    // Interrupted mid-apply: memory.img is a mix of two epochs.
    complete_.reset();
    return Status::OK();
  }
  std::unique_ptr<Mapping> m;
  FTSYNC_RETURN_IF_ERROR(MapImage(memory_path(), info.frame_count * info.page_size, false, &m));
  image_ = std::move(m);
  complete_ = info;
  state_checksum_ = checksum;
  return Status::OK();
}

Status ReplicaImage::MapImage(const std::string& path, uint64_t bytes, bool create,
                              std::unique_ptr<Mapping>* out) {
  auto m = std::make_unique<Mapping>();
  m->fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0600);
  if (m->fd < 0) return Status::FromErrno(errno, "open " + path);
  if (create) {
    // Preallocate: later epochs then never need new disk space for pages.
    int rc = ::posix_fallocate(m->fd, 0, static_cast<off_t>(bytes));
    if (rc == EOPNOTSUPP || rc == EINVAL) {
      // No fallocate here: write the zeros, so the blocks exist all the same
      // (a sparse image would fault, not fail, when the disk fills later).
      std::vector<uint8_t> zeros(1 << 20);
      rc = 0;
      for (uint64_t off = 0; off < bytes && rc == 0; off += zeros.size()) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), bytes - off));
        Status w = WriteAll(m->fd, zeros.data(), n, path);
        if (!w.ok()) rc = w.code() == Errc::kNoSpace ? ENOSPC : EIO;
      }
    }
    if (rc != 0) return Status::FromErrno(rc, "preallocate " + std::to_string(bytes) + " bytes for " + path);
  } else {
    struct stat st;
    if (::fstat(m->fd, &st) != 0) return Status::FromErrno(errno, "stat " + path);
    if (static_cast<uint64_t>(st.st_size) != bytes)
      return Status(Errc::kCorruption, path + " has " + std::to_string(st.st_size) +
                                           " bytes, expected " + std::to_string(bytes));
  }
  void* a = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
  if (a == MAP_FAILED) return Status::FromErrno(errno, "mmap " + path);
  m->addr = static_cast<uint8_t*>(a);
  m->bytes = bytes;
  *out = std::move(m);
  return Status::OK();
}

Status ReplicaImage::WriteMeta(const std::string& gen_dir, const ReplicaInfo& info, bool complete,
                               uint64_t checksum) {
  char buf[kMetaSize];
  std::memset(buf, ' ', sizeof buf);
  int n = std::snprintf(buf, sizeof buf,
                        "ftsync-replica 1\ncomplete %d\nsession %016" PRIx64 "\nepoch %" PRIu64
                        "\npage_size %" PRIu32 "\nframe_count %" PRIu64
                        "\nstate_checksum %016" PRIx64 "\n",
                        complete ? 1 : 0, info.session, info.epoch, info.page_size,
                        info.frame_count, checksum);
  buf[n] = '\n';
  buf[kMetaSize - 1] = '\n';
  // Rewritten in place: the file's blocks exist, so a full disk cannot stop it.
  std::string path = gen_dir + "/replica.meta";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  ssize_t w = ::pwrite(fd, buf, sizeof buf, 0);
  int err = errno;
  if (w == static_cast<ssize_t>(sizeof buf) && durable_ && ::fdatasync(fd) != 0) {
    err = errno;
    w = -1;
  }
  ::close(fd);
  if (w != static_cast<ssize_t>(sizeof buf)) return Status::FromErrno(w < 0 ? err : EIO, "write " + path);
  return Status::OK();
}

Status ReplicaImage::WriteStateFile(std::span<const uint8_t> state, uint64_t* checksum) {
  std::string dir = pending_ ? dir_ + "/" + GenName(pending_info_.session) + ".new" : dir_ + "/current";
  std::string path = dir + "/state.bin.new";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno(errno, "open " + path);
  Status s = WriteAll(fd, state.data(), state.size(), path);
  if (s.ok() && durable_ && ::fdatasync(fd) != 0) s = Status::FromErrno(errno, "fdatasync " + path);
  ::close(fd);
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s;
  }
  *checksum = XXH3_64bits(state.data(), state.size());
  return Status::OK();
}

Result<std::vector<uint8_t>> ReplicaImage::ReadState() const {
  if (!complete_) return Status(Errc::kNotFound, "replica " + dir_ + " has no complete epoch");
  std::error_code ec;
  uint64_t size = fs::file_size(state_path(), ec);
  if (ec) return Status(Errc::kIoError, state_path() + ": " + ec.message());
  std::vector<uint8_t> buf(size);
  int fd = ::open(state_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(errno, "open " + state_path());
  ssize_t n = ::pread(fd, buf.data(), size, 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(size)) return Status(Errc::kIoError, "short read of " + state_path());
  if (XXH3_64bits(buf.data(), buf.size()) != state_checksum_)
    return Status(Errc::kCorruption, state_path() + ": checksum does not match replica.meta");
  return buf;
}

Status ReplicaImage::ReadFrame(uint64_t pfn, uint8_t* dst) const {
  if (!complete_) return Status(Errc::kNotFound, "replica " + dir_ + " has no complete epoch");
  if (pfn >= complete_->frame_count)
    return Status(Errc::kInvalidArgument, "pfn " + std::to_string(pfn) + " out of range");
  std::memcpy(dst, image_->addr + pfn * complete_->page_size, complete_->page_size);
  return Status::OK();
}

Status ReplicaImage::BeginFull(uint64_t session, uint32_t page_size, uint64_t frame_count) {
  AbortFull();
  std::string gen = dir_ + "/" + GenName(session) + ".new";
  std::error_code ec;
  fs::remove_all(gen, ec);
  if (!fs::create_directory(gen, ec)) return Status(Errc::kIoError, "create " + gen + ": " + ec.message());
  pending_info_ = ReplicaInfo{session, 0, page_size, frame_count};
  std::unique_ptr<Mapping> m;
  Status s = MapImage(gen + "/memory.img", frame_count * page_size, true, &m);
  if (!s.ok()) {
    fs::remove_all(gen, ec);
    return s.Annotate("full synchronisation");
  }
  pending_ = std::move(m);
  return Status::OK();
}

Status ReplicaImage::WriteFullPages(std::span<const PageWrite> pages) {
  if (!pending_) return Status(Errc::kFailedPrecondition, "no full synchronisation in progress");
  for (const PageWrite& p : pages)
    std::memcpy(pending_->addr + p.pfn * pending_info_.page_size, p.data, pending_info_.page_size);
  return Status::OK();
}

Status ReplicaImage::CommitFull(uint64_t epoch, std::span<const uint8_t> state) {
  if (!pending_) return Status(Errc::kFailedPrecondition, "no full synchronisation in progress");
  std::string name = GenName(pending_info_.session);
  std::string gen_new = dir_ + "/" + name + ".new";
  uint64_t checksum = 0;
  FTSYNC_RETURN_IF_ERROR(WriteStateFile(state, &checksum));
  ReplicaInfo info = pending_info_;
  info.epoch = epoch;
  FTSYNC_RETURN_IF_ERROR(WriteMeta(gen_new, info, true, checksum));
  if (durable_ && ::msync(pending_->addr, pending_->bytes, MS_SYNC) != 0)
    return Status::FromErrno(errno, "msync " + gen_new + "/memory.img");
  std::error_code ec;
  fs::rename(gen_new + "/state.bin.new", gen_new + "/state.bin", ec);
  if (ec) return Status(Errc::kIoError, "rename state: " + ec.message());
  // Switch `current` to the new generation in one rename.
  // The new generation gets a name no other holds, even when a caller
  // reuses a session identifier: `current` never points at a missing
  // directory.
  std::string target = name;
  for (int n = 1; fs::exists(dir_ + "/" + target); ++n) target = name + "." + std::to_string(n);
  fs::rename(gen_new, dir_ + "/" + target, ec);
  if (ec) return Status(Errc::kIoError, "rename " + gen_new + ": " + ec.message());
  fs::remove(dir_ + "/current.new", ec);
  fs::create_symlink(target, dir_ + "/current.new", ec);
  if (!ec) fs::rename(dir_ + "/current.new", dir_ + "/current", ec);
  if (ec) return Status(Errc::kIoError, "switch " + dir_ + "/current: " + ec.message());
  // Every other generation is out of date now (also leftovers of a crash).
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string n = e.path().filename();
    if (n.rfind("gen-", 0) == 0 && n != target && n.find(".new") == std::string::npos)
      fs::remove_all(e.path(), ec);
  }
  image_ = std::move(pending_);
  complete_ = info;
  state_checksum_ = checksum;
  return Status::OK();
}

void ReplicaImage::AbortFull() {
  if (!pending_) return;
  pending_.reset();
  std::error_code ec;
  fs::remove_all(dir_ + "/" + GenName(pending_info_.session) + ".new", ec);
}

Status ReplicaImage::ApplyEpoch(uint64_t session, uint64_t epoch, std::span<const PageWrite> pages,
                                std::span<const uint8_t> state) {
  if (!complete_ || complete_->session != session || complete_->epoch + 1 != epoch)
    return Status(Errc::kFailedPrecondition,
                  "epoch " + std::to_string(epoch) + " of session " + std::to_string(session) +
                      " does not follow the replica's last complete epoch");
  uint64_t checksum = 0;
  // Step 1 is the only one that needs new space: a full disk fails here.
  FTSYNC_RETURN_IF_ERROR(WriteStateFile(state, &checksum));
  ReplicaInfo info = *complete_;
  FTSYNC_RETURN_IF_ERROR(WriteMeta(dir_ + "/current", info, false, state_checksum_));
  const uint32_t ps = info.page_size;
  for (const PageWrite& p : pages) std::memcpy(image_->addr + p.pfn * ps, p.data, ps);
  if (durable_ && ::msync(image_->addr, image_->bytes, MS_SYNC) != 0) {
    complete_.reset();
    return Status::FromErrno(errno, "msync " + memory_path());
  }
  std::error_code ec;
  fs::rename(dir_ + "/current/state.bin.new", state_path(), ec);
  if (ec) {
    complete_.reset();
    return Status(Errc::kIoError, "rename state: " + ec.message());
  }
  info.epoch = epoch;
  Status s = WriteMeta(dir_ + "/current", info, true, checksum);
  if (!s.ok()) {
    complete_.reset();
    return s;
  }
  complete_ = info;
  state_checksum_ = checksum;
  return Status::OK();
}

}  // namespace ftsync
