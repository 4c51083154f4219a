#include "stream/forward_validator.h"

#include "diff/page_delta.h"

namespace ftsync::internal {

ForwardValidator::ForwardValidator(const StreamHeader& header) : header_(header) {}

Status ForwardValidator::Fail(Errc code, const char* rule, const std::string& what,
                              const RecordView& r) {
  ended_ = true;
  return Status(code, std::string("[") + rule + "] " + RecordTypeName(r.type) + ": " + what +
                          " at offset " + std::to_string(r.offset));
}

Result<ForwardEvent> ForwardValidator::Feed(const RecordView& r) {
  if (ended_) return Fail(Errc::kProtocol, "O9", "record after END", r);
  ForwardEvent ev{};
  switch (r.type) {
    case kHeartbeat: {
      auto hb = ParseHeartbeat(r.body);
      if (!hb.ok()) return hb.status();
      ev.kind = ForwardEvent::kHeartbeat;
      ev.heartbeat = *hb;
      return ev;
    }
    case kEnd: {
      FTSYNC_RETURN_IF_ERROR(ParseEnd(r.body));
      if (in_epoch_)
        return Fail(Errc::kProtocol, "O9",
                    "END inside open epoch " + std::to_string(epoch_), r);
      ended_ = true;
      ev.kind = ForwardEvent::kEnd;
      return ev;
    }
    case kEpochBegin: {
      auto b = ParseEpochBegin(r.body);
      if (!b.ok()) return b.status();
      if (in_epoch_)
        return Fail(Errc::kProtocol, "O2",
                    "epoch " + std::to_string(epoch_) + " is still open", r);
      if (b->epoch != next_epoch_)
        return Fail(Errc::kProtocol, "O3",
                    "epoch " + std::to_string(b->epoch) + ", expected " +
                        std::to_string(next_epoch_), r);
      in_epoch_ = true;
      epoch_ = b->epoch;
      pages_ = 0;
      have_state_ = false;
      if (epoch_ == 0) covered_.Resize(header_.frame_count);
      ev.kind = ForwardEvent::kBegin;
      ev.epoch = epoch_;
      return ev;
    }
    case kSpecPageData: {
      auto sp = ParseSpecPageData(r.body, header_.page_size);
      if (!sp.ok()) return sp.status();
      if (in_epoch_)
        return Fail(Errc::kProtocol, "S1", "inside open epoch " + std::to_string(epoch_), r);
      if (sp->epoch == 0 || sp->epoch != next_epoch_)
        return Fail(Errc::kProtocol, "S1",
                    "for epoch " + std::to_string(sp->epoch) + ", the next epoch is " +
                        std::to_string(next_epoch_) + (next_epoch_ == 0 ? " (epoch 0 takes none)" : ""),
                    r);
      for (uint32_t i = 0; i < sp->count; ++i)
        if (sp->pfn(i) >= header_.frame_count)
          return Fail(Errc::kCorruption, "O8",
                      "pfn " + std::to_string(sp->pfn(i)) + " >= frame_count " +
                          std::to_string(header_.frame_count), r);
      ev.kind = ForwardEvent::kSpec;
      ev.epoch = sp->epoch;
      ev.spec = *sp;
      return ev;
    }
    default:
      break;
  }
  // The remaining forward types need an open epoch.
  if (!in_epoch_) return Fail(Errc::kProtocol, "O1", "no epoch is open", r);
  ev.epoch = epoch_;
  switch (r.type) {
    case kPageData: {
      auto p = ParsePageData(r.body, header_.page_size);
      if (!p.ok()) return p.status();
      for (uint32_t i = 0; i < p->count; ++i) {
        uint64_t pfn = p->pfn(i);
        if (pfn >= header_.frame_count)
          return Fail(Errc::kCorruption, "O8",
                      "pfn " + std::to_string(pfn) + " >= frame_count " +
                          std::to_string(header_.frame_count), r);
        if (epoch_ == 0) covered_.Set(pfn);
      }
      pages_ += p->count;
      ev.kind = ForwardEvent::kPages;
      ev.pages = *p;
      return ev;
    }
    case kPageDelta: {
      if (epoch_ == 0)
        return Fail(Errc::kProtocol, "D1", "in epoch 0 (the full synchronisation has no base)", r);
      if (header_.page_size != kPageDeltaPageSize)
        return Fail(Errc::kProtocol, "D2", "in a stream of page_size " +
                                               std::to_string(header_.page_size) + ", not 4096", r);
      auto d = ParsePageDelta(r.body);
      if (!d.ok()) return d.status();
      PageDeltaEntry e;
      size_t pos = 8;
      for (uint32_t i = 0; i < d->count; ++i) {
        pos = d->Entry(pos, &e);
        if (e.pfn >= header_.frame_count)
          return Fail(Errc::kCorruption, "O8",
                      "pfn " + std::to_string(e.pfn) + " >= frame_count " +
                          std::to_string(header_.frame_count), r);
        Status s = CheckPageDelta(e.encoding);
        if (!s.ok())
          return Fail(Errc::kCorruption, "D3", "entry " + std::to_string(i) + " (pfn " +
                                                   std::to_string(e.pfn) + "): " + s.context(), r);
      }
      pages_ += d->count;
      ev.kind = ForwardEvent::kDelta;
      ev.delta = *d;
      return ev;
    }
    case kSpecApply: {
      auto a = ParseSpecApply(r.body);
      if (!a.ok()) return a.status();
      for (uint32_t i = 0; i < a->count; ++i)
        if (a->pfn(i) >= header_.frame_count)
          return Fail(Errc::kCorruption, "O8",
                      "pfn " + std::to_string(a->pfn(i)) + " >= frame_count " +
                          std::to_string(header_.frame_count), r);
      pages_ += a->count;
      ev.kind = ForwardEvent::kSpecApply;
      ev.spec_apply = *a;
      return ev;
    }
    case kDeviceState:
      if (have_state_)
        return Fail(Errc::kProtocol, "O6", "second DEVICE_STATE in epoch " +
                                               std::to_string(epoch_), r);
      have_state_ = true;
      ev.kind = ForwardEvent::kState;
      ev.state = r.body;
      return ev;
    case kEpochCommit: {
      auto c = ParseEpochCommit(r.body);
      if (!c.ok()) return c.status();
      if (c->epoch != epoch_)
        return Fail(Errc::kProtocol, "O4",
                    "commits epoch " + std::to_string(c->epoch) + " but epoch " +
                        std::to_string(epoch_) + " is open", r);
      if (c->pages != pages_)
        return Fail(Errc::kCorruption, "O5",
                    "names " + std::to_string(c->pages) + " pages, epoch carried " +
                        std::to_string(pages_), r);
      if (!have_state_)
        return Fail(Errc::kProtocol, "O6", "epoch " + std::to_string(epoch_) +
                                               " has no DEVICE_STATE", r);
      if (epoch_ == 0) {
        uint64_t covered = covered_.Count();
        if (covered != header_.frame_count)
          return Fail(Errc::kProtocol, "O7",
                      "epoch 0 carried " + std::to_string(covered) + " of " +
                          std::to_string(header_.frame_count) + " frames", r);
        covered_.Resize(0);
      }
      in_epoch_ = false;
      next_epoch_ = epoch_ + 1;
      ev.kind = ForwardEvent::kCommit;
      return ev;
    }
    default:
      return Fail(Errc::kInternal, "R8", "unexpected type on forward stream", r);
  }
}

}  // namespace ftsync::internal
