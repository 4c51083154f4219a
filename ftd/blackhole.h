// `ftd primary --blackhole`: checkpoints go to /dev/null. An in-process
// receiver reads the primary's stream (framing checked), throws every byte
// away and acknowledges each epoch as soon as its commit record arrives, so
// the primary runs its whole epoch cycle (pause, harvest, copy, output
// commit) with no backup. For measuring the primary's side and for
// debugging; there is no replica, so no failover (like `xl remus -b`).
#ifndef FTSYNC_FTD_BLACKHOLE_H_
#define FTSYNC_FTD_BLACKHOLE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "ftsync/io.h"

namespace ftd {

class Blackhole {
 public:
  Blackhole();
  ~Blackhole();  // closes both pipes, joins the reader
  ftsync::ByteSink& sink() { return stream_.sink(); }        // for the Checkpointer
  ftsync::ByteSource& source() { return back_.source(); }    // its back channel
  uint64_t bytes_discarded() const { return discarded_; }
  uint64_t epochs_acked() const { return acked_; }

 private:
  void Run();
  ftsync::MemoryPipe stream_, back_;
  std::atomic<uint64_t> discarded_{0}, acked_{0};
  std::thread reader_;
};

}  // namespace ftd

#endif  // FTSYNC_FTD_BLACKHOLE_H_
