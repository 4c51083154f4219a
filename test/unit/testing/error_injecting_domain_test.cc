#include "testing/error_injecting_domain.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <vector>

#include "testing/fake_domain.h"

namespace ftsync::testing {
namespace {

using Method = ErrorInjectingDomain::Method;

TEST_CASE("ErrorInjectingDomain: method names round-trip", "[error_injecting]") {
  for (size_t i = 0; i < static_cast<size_t>(Method::kCount); ++i) {
    Method m = static_cast<Method>(i);
    auto parsed = ErrorInjectingDomain::ParseMethod(ErrorInjectingDomain::MethodName(m));
    REQUIRE(parsed.ok());
    CHECK(*parsed == m);
  }
  CHECK(std::string(ErrorInjectingDomain::MethodName(Method::kReadFrames)) == "ReadFrames");
  CHECK(std::string(ErrorInjectingDomain::MethodName(Method::kCount)) == "?");
  CHECK(ErrorInjectingDomain::ParseMethod("kReadFrames").status().code() ==
        Errc::kInvalidArgument);
  CHECK(ErrorInjectingDomain::ParseMethod("Name").status().code() ==
        Errc::kInvalidArgument);
}

TEST_CASE("ErrorInjectingDomain: passes everything through when unarmed",
          "[error_injecting]") {
  FakeDomain fake(32, 128, "fake:9");
  ErrorInjectingDomain d(&fake);
  CHECK(d.Name() == "fake:9");
  CHECK(d.PageSize() == 128);
  CHECK(d.FrameCount() == 32);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(fake.Write(3, 0, std::vector<uint8_t>{1}).ok());
  std::vector<uint64_t> re = {5};
  REQUIRE(d.Redirty(re).ok());
  DirtyBitmap bm;
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  CHECK(bm.Count() == 2);
  CHECK(d.SupportsPeekDirty());
  CHECK(d.SupportsRearmDirty());
  REQUIRE(fake.Write(4, 0, std::vector<uint8_t>{1}).ok());
  REQUIRE(fake.Write(6, 0, std::vector<uint8_t>{1}).ok());
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(bm.Count() == 2);
  std::vector<uint64_t> four = {4};
  REQUIRE(d.RearmDirty(four).ok());
  CHECK(fake.pending_dirty().Count() == 1);
  CHECK(fake.pending_dirty().Test(6));
  CHECK(d.Resume().code() == Errc::kFailedPrecondition);  // target's own error
  REQUIRE(d.Suspend().ok());
  std::vector<uint64_t> pfns = {3};
  std::vector<uint8_t> buf(128);
  std::vector<int> errors(1, -1);
  REQUIRE(d.ReadFrames(pfns, buf.data(), errors).ok());
  CHECK(errors[0] == 0);
  CHECK(buf[0] == 1);
  auto blob = d.SaveState();
  REQUIRE(blob.ok());
  REQUIRE(d.RestoreState(*blob).ok());
  REQUIRE(d.Resume().ok());
  REQUIRE(d.DisableDirtyLog().ok());

  CHECK(fake.counters().enable_dirty_log == 1);
  CHECK(fake.counters().redirty == 1);
  CHECK(fake.counters().fetch_and_clear_dirty == 1);
  CHECK(fake.counters().suspend == 1);
  CHECK(fake.counters().resume == 2);
  CHECK(fake.counters().read_frames == 1);
  CHECK(fake.counters().save_state == 1);
  CHECK(fake.counters().restore_state == 1);
  CHECK(fake.counters().disable_dirty_log == 1);
  CHECK(fake.counters().peek_dirty == 1);
  CHECK(fake.counters().rearm_dirty == 1);
  for (size_t i = 0; i < static_cast<size_t>(Method::kCount); ++i) {
    Method m = static_cast<Method>(i);
    INFO(ErrorInjectingDomain::MethodName(m));
    CHECK(d.calls(m) == (m == Method::kResume ? 2u : 1u));
    CHECK(d.injected(m) == 0);
  }
}

TEST_CASE("ErrorInjectingDomain: FailNth fails exactly the n-th call",
          "[error_injecting]") {
  FakeDomain fake(16, 64);
  ErrorInjectingDomain d(&fake);
  d.FailNth(Method::kReadFrames, 3, Status(Errc::kIoError, "boom"));
  std::vector<uint64_t> pfns = {1, 2};
  std::vector<uint8_t> buf(2 * 64);
  std::vector<int> errors(2);
  for (int call = 1; call <= 6; ++call) {
    INFO("call " << call);
    Status s = d.ReadFrames(pfns, buf.data(), errors);
    if (call == 3) {
      CHECK(s.code() == Errc::kIoError);
      CHECK(s.context() == "boom");
    } else {
      CHECK(s.ok());
    }
  }
  CHECK(d.calls(Method::kReadFrames) == 6);
  CHECK(d.injected(Method::kReadFrames) == 1);
  CHECK(fake.counters().read_frames == 5);  // the failed call never reached it
  CHECK(d.calls(Method::kSuspend) == 0);
}

TEST_CASE("ErrorInjectingDomain: an injected failure leaves the target untouched",
          "[error_injecting]") {
  FakeDomain fake(16, 64);
  ErrorInjectingDomain d(&fake);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(fake.Write(7, 0, std::vector<uint8_t>{1, 2}).ok());

  d.FailNth(Method::kFetchAndClearDirty, 1, Status(Errc::kBusy, "later"));
  DirtyBitmap bm;
  Status s = d.FetchAndClearDirty(&bm);
  CHECK(s.IsRetryable());
  // The dirty log is unchanged: the retry reports the frame.
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  std::vector<uint64_t> bits;
  bm.AppendSetBits(&bits);
  CHECK(bits == std::vector<uint64_t>{7});

  d.FailNth(Method::kSuspend, 1, Status(Errc::kIoError, "no"));
  CHECK_FALSE(d.Suspend().ok());
  CHECK_FALSE(fake.suspended());
  REQUIRE(d.Suspend().ok());
  CHECK(fake.suspended());

  d.FailNth(Method::kSaveState, 1, Status(Errc::kIoError, "save"));
  auto blob = d.SaveState();
  CHECK(blob.status().code() == Errc::kIoError);
  CHECK(fake.counters().save_state == 0);
  CHECK(d.SaveState().ok());
}

TEST_CASE("ErrorInjectingDomain: PeekDirty and RearmDirty faults",
          "[error_injecting]") {
  FakeDomain fake(16, 64);
  ErrorInjectingDomain d(&fake);
  REQUIRE(d.EnableDirtyLog().ok());
  REQUIRE(fake.Write(2, 0, std::vector<uint8_t>{1}).ok());
  REQUIRE(fake.Write(9, 0, std::vector<uint8_t>{1}).ok());
  REQUIRE(d.ParseFaultSpec("PeekDirty:1, RearmDirty:2+").ok());

  DirtyBitmap bm;
  Status peek = d.PeekDirty(&bm);
  CHECK(peek.code() == Errc::kIoError);
  CHECK(peek.context() == "injected fault: PeekDirty call 1");
  CHECK(fake.counters().peek_dirty == 0);  // not called through
  REQUIRE(d.PeekDirty(&bm).ok());
  CHECK(bm.Count() == 2);

  std::vector<uint64_t> two = {2}, nine = {9};
  REQUIRE(d.RearmDirty(two).ok());
  Status rearm = d.RearmDirty(nine);
  CHECK(rearm.context() == "injected fault: RearmDirty call 2");
  CHECK(d.RearmDirty(nine).code() == Errc::kIoError);
  CHECK(d.injected(Method::kRearmDirty) == 2);
  CHECK(d.calls(Method::kPeekDirty) == 2);
  // The failed re-arms left frame 9 dirty; frame 2 was re-armed.
  REQUIRE(d.FetchAndClearDirty(&bm).ok());
  std::vector<uint64_t> bits;
  bm.AppendSetBits(&bits);
  CHECK(bits == std::vector<uint64_t>{9});

  // A capability that says yes with calls that fail, as a test of an
  // engine's fallback.
  d.ClearFaults();
  d.FailAlwaysFrom(Method::kPeekDirty, 1, Status(Errc::kNotSupported, "no peek"));
  CHECK(d.SupportsPeekDirty());
  CHECK(d.PeekDirty(&bm).code() == Errc::kNotSupported);
}

TEST_CASE("ErrorInjectingDomain: several faults, FailAlwaysFrom, Reset, ClearFaults",
          "[error_injecting]") {
  FakeDomain fake(4, 64);
  ErrorInjectingDomain d(&fake);
  d.FailNth(Method::kEnableDirtyLog, 2, Status(Errc::kIoError, "two"));
  d.FailNth(Method::kEnableDirtyLog, 4, Status(Errc::kNoSpace, "four"));
  std::vector<Errc> got;
  for (int i = 0; i < 5; ++i) got.push_back(d.EnableDirtyLog().code());
  CHECK(got == std::vector<Errc>{Errc::kOk, Errc::kIoError, Errc::kOk,
                                 Errc::kNoSpace, Errc::kOk});

  d.FailAlwaysFrom(Method::kDisableDirtyLog, 3, Status(Errc::kIoError, "gone"));
  got.clear();
  for (int i = 0; i < 5; ++i) got.push_back(d.DisableDirtyLog().code());
  CHECK(got == std::vector<Errc>{Errc::kOk, Errc::kOk, Errc::kIoError,
                                 Errc::kIoError, Errc::kIoError});
  CHECK(d.injected(Method::kDisableDirtyLog) == 3);

  // Reset restarts counting; armed faults stay.
  d.Reset();
  CHECK(d.calls(Method::kEnableDirtyLog) == 0);
  CHECK(d.EnableDirtyLog().ok());
  CHECK(d.EnableDirtyLog().code() == Errc::kIoError);
  CHECK(d.DisableDirtyLog().ok());

  d.ClearFaults();
  for (int i = 0; i < 5; ++i) {
    CHECK(d.EnableDirtyLog().ok());
    CHECK(d.DisableDirtyLog().ok());
  }
  CHECK(d.calls(Method::kEnableDirtyLog) == 7);
}

TEST_CASE("ErrorInjectingDomain: fault specs arm the named calls", "[error_injecting]") {
  FakeDomain fake(4, 64);
  ErrorInjectingDomain d(&fake);
  REQUIRE(d.ParseFaultSpec("ReadFrames:3, Suspend:1,Resume:2+").ok());

  std::vector<uint64_t> pfns = {0};
  std::vector<uint8_t> buf(64);
  std::vector<int> errors(1);
  CHECK(d.ReadFrames(pfns, buf.data(), errors).ok());
  CHECK(d.ReadFrames(pfns, buf.data(), errors).ok());
  Status s = d.ReadFrames(pfns, buf.data(), errors);
  CHECK(s.code() == Errc::kIoError);
  CHECK(s.context() == "injected fault: ReadFrames call 3");
  CHECK(d.ReadFrames(pfns, buf.data(), errors).ok());

  CHECK(d.Suspend().context() == "injected fault: Suspend call 1");
  REQUIRE(d.Suspend().ok());
  REQUIRE(d.Resume().ok());
  REQUIRE(d.Suspend().ok());
  CHECK_FALSE(d.Resume().ok());
  CHECK_FALSE(d.Resume().ok());
  CHECK(fake.suspended());

  CHECK(d.ParseFaultSpec("").ok());
  CHECK(d.ParseFaultSpec("  ").ok());
}

TEST_CASE("ErrorInjectingDomain: bad fault specs are rejected whole", "[error_injecting]") {
  FakeDomain fake(4, 64);
  ErrorInjectingDomain d(&fake);
  struct Case {
    const char* spec;
    const char* bad_item;
  };
  for (Case c : {Case{"ReadFrames", "'ReadFrames'"},
                 Case{"Suspend:1,Bogus:2", "'Bogus:2'"},
                 Case{"Suspend:0", "'Suspend:0'"},
                 Case{"Suspend:x", "'Suspend:x'"},
                 Case{"Suspend:", "'Suspend:'"},
                 Case{"Suspend:1,", "''"},
                 Case{"Suspend:-1", "'Suspend:-1'"},
                 Case{"Suspend:2++", "'Suspend:2++'"},
                 Case{"kSuspend:1", "'kSuspend:1'"},
                 Case{"Suspend:99999999999999999999999", "'Suspend:9999"}}) {
    INFO("spec " << c.spec);
    Status s = d.ParseFaultSpec(c.spec);
    CHECK(s.code() == Errc::kInvalidArgument);
    CHECK(s.context().find(std::string("item ") + c.bad_item) != std::string::npos);
  }
  // Nothing was armed by the rejected specs (Suspend:1 came before a bad item).
  CHECK(d.Suspend().ok());
  CHECK(d.Resume().ok());
  CHECK(d.Suspend().ok());
  CHECK(d.Resume().ok());
}

TEST_CASE("ErrorInjectingDomain: arms from the environment", "[error_injecting]") {
  FakeDomain fake(4, 64);
  ErrorInjectingDomain d(&fake);
  ::unsetenv("FTSYNC_TEST_FAULT_X");
  CHECK(d.ArmFromEnvironment("FTSYNC_TEST_FAULT_X").ok());
  CHECK(d.Suspend().ok());

  ::setenv("FTSYNC_TEST_FAULT_X", "Resume:1", 1);
  REQUIRE(d.ArmFromEnvironment("FTSYNC_TEST_FAULT_X").ok());
  CHECK(d.Resume().code() == Errc::kIoError);
  CHECK(d.Resume().ok());

  ::setenv("FTSYNC_TEST_FAULT_X", "Resume", 1);
  Status s = d.ArmFromEnvironment("FTSYNC_TEST_FAULT_X");
  CHECK(s.code() == Errc::kInvalidArgument);
  CHECK(s.context().find("FTSYNC_TEST_FAULT_X") == 0);
  ::unsetenv("FTSYNC_TEST_FAULT_X");
}

}  // namespace
}  // namespace ftsync::testing
