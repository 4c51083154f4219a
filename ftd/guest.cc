#include "guest.h"

#include <chrono>
#include <thread>
#include <vector>

#include "testing/fake_domain.h"
#include "testing/workload.h"

namespace ftd {
using ftsync::Errc;
using ftsync::Status;

namespace {

// The in-memory domain: a deterministic workload writes each interval.
// For tests and demonstrations of the daemon without a hypervisor.
class FakeGuest : public Guest {
 public:
  FakeGuest(const Options& o, ftsync::testing::WorkloadKind kind)
      : dom_(o.fake_frames, 4096, "fake", o.fake_seed), work_(kind, o.fake_seed) {}
  ftsync::Domain* domain() override { return &dom_; }
  Status RunFor(int ms) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return work_.Step(&dom_);
  }
  std::string Describe() const override {
    return "fake domain, " + std::to_string(dom_.FrameCount()) + " frames, guest counter " +
           std::to_string(dom_.state_counter());
  }
  ftsync::testing::FakeDomain& fake() { return dom_; }

 private:
  ftsync::testing::FakeDomain dom_;
  ftsync::testing::Workload work_;
};

}  // namespace

ftsync::Result<std::unique_ptr<Guest>> LaunchGuest(const Options& o, GuestContext ctx) {
  if (o.hypervisor == "qemu") return LaunchQemuGuest(o, ctx);
  if (o.hypervisor == "xen") return LaunchXenGuest(o, ctx);
  if (o.hypervisor == "fake") {
    auto kind = ftsync::testing::ParseWorkloadKind(o.fake_workload);
    if (!kind.ok()) return kind.status();
    return std::unique_ptr<Guest>(new FakeGuest(o, *kind));
  }
  return Status(Errc::kNotSupported, "hypervisor '" + o.hypervisor + "' is not available in this ftd");
}

ftsync::Result<std::unique_ptr<Guest>> RestoreGuest(const Options& o, GuestContext ctx,
                                                   ftsync::ReplicaImage* replica) {
  auto info = replica->LastComplete();
  if (!info) return Status(Errc::kNotFound, "replica " + replica->dir() + " has no complete epoch");
  if (o.hypervisor == "qemu") return RestoreQemuGuest(o, ctx, replica);
  if (o.hypervisor == "xen") return RestoreXenGuest(o, ctx, replica);
  if (o.hypervisor != "fake")
    return Status(Errc::kNotSupported, "hypervisor '" + o.hypervisor + "' is not available in this ftd");
  auto kind = ftsync::testing::ParseWorkloadKind(o.fake_workload);
  if (!kind.ok()) return kind.status();
  Options shaped = o;
  shaped.fake_frames = info->frame_count;
  auto g = std::make_unique<FakeGuest>(shaped, *kind);
  std::vector<uint8_t> page(info->page_size);
  for (uint64_t pfn = 0; pfn < info->frame_count; ++pfn) {
    FTSYNC_RETURN_IF_ERROR(replica->ReadFrame(pfn, page.data()));
    FTSYNC_RETURN_IF_ERROR(g->fake().Write(pfn, 0, page));
  }
  auto state = replica->ReadState();
  if (!state.ok()) return state.status();
  FTSYNC_RETURN_IF_ERROR(g->fake().RestoreState(*state).Annotate("restore state"));
  return std::unique_ptr<Guest>(std::move(g));
}

}  // namespace ftd
