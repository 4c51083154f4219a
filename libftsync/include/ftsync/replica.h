// ftsync: the backup's replica of a protected domain, on disk.
//
// A replica directory holds:
//   memory.img    the guest's memory, frame_count * page_size bytes, one
//                 frame after another (a file a VM can boot from)
//   state.bin     the CPU/device state of the same epoch
//   replica.meta  text: format, session, epoch, page size, frame count, state
//                 checksum, and whether the replica is complete
// The replica is complete when replica.meta says so; memory.img and state.bin
// then hold exactly the domain's state at the end of that epoch.
//
// Atomicity: an epoch is applied only whole. The state is written to a new
// file first (disk full stops here, nothing changed); memory.img is
// preallocated, so writing pages into it needs no new space; replica.meta is
// replaced by rename. A full synchronisation (epoch 0) is written into
// memory.img.new and renamed over memory.img when committed, so a failed
// resync leaves the previous replica intact.
#ifndef FTSYNC_REPLICA_H_
#define FTSYNC_REPLICA_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ftsync/status.h"

namespace ftsync {

struct ReplicaInfo {
  uint64_t session = 0;
  uint64_t epoch = 0;
  uint32_t page_size = 0;
  uint64_t frame_count = 0;
};

// A page of an epoch being applied: frame number and its new contents.
struct PageWrite {
  uint64_t pfn;
  const uint8_t* data;  // page_size bytes
};

class ReplicaImage {
 public:
  // Opens the replica in `dir`, creating the directory if missing. A replica
  // whose meta says it was interrupted mid-apply opens as incomplete.
  static Result<std::unique_ptr<ReplicaImage>> Open(const std::string& dir, bool durable = false);
  ~ReplicaImage();

  // The last complete epoch, if any.
  std::optional<ReplicaInfo> LastComplete() const;
  const std::string& dir() const { return dir_; }
  std::string memory_path() const;
  std::string state_path() const;

  // Reads the stored state / one frame of the last complete epoch.
  Result<std::vector<uint8_t>> ReadState() const;
  Status ReadFrame(uint64_t pfn, uint8_t* dst) const;

  // Full synchronisation. BeginFull preallocates memory.img.new
  // (kNoSpace when the disk is full; nothing else changes).
  Status BeginFull(uint64_t session, uint32_t page_size, uint64_t frame_count);
  Status WriteFullPages(std::span<const PageWrite> pages);
  // Makes the new image complete as epoch `epoch` with `state`.
  Status CommitFull(uint64_t epoch, std::span<const uint8_t> state);
  // Drops a full synchronisation in progress. Idempotent.
  void AbortFull();

  // Applies one later epoch of the current session on top of the last
  // complete one. Requires LastComplete() of the same session and epoch - 1.
  Status ApplyEpoch(uint64_t session, uint64_t epoch, std::span<const PageWrite> pages,
                    std::span<const uint8_t> state);

 private:
  ReplicaImage(std::string dir, bool durable);
  struct Mapping;
  Status WriteMeta(const std::string& gen_dir, const ReplicaInfo& info, bool complete,
                   uint64_t state_checksum);
  Status LoadMeta();
  Status WriteStateFile(std::span<const uint8_t> state, uint64_t* checksum);
  Status MapImage(const std::string& path, uint64_t bytes, bool create, std::unique_ptr<Mapping>* out);

  std::string dir_;
  bool durable_;
  std::optional<ReplicaInfo> complete_;
  uint64_t state_checksum_ = 0;
  std::unique_ptr<Mapping> image_;     // memory.img of the complete epoch
  std::unique_ptr<Mapping> pending_;   // memory.img.new during a full sync
  ReplicaInfo pending_info_;
};

}  // namespace ftsync

#endif  // FTSYNC_REPLICA_H_
