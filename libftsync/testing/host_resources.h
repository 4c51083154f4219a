// ftsync testing: host resources that tests and benchmarks share.
//
// ScratchDir: a fresh directory, removed with everything in it when the
// object goes away. FreeLoopbackPort: a TCP port on 127.0.0.1 that was
// free a moment ago (the caller binds it soon after; another process may
// take it in between, which a caller that cannot bind reports).
#ifndef FTSYNC_TESTING_HOST_RESOURCES_H_
#define FTSYNC_TESTING_HOST_RESOURCES_H_

#include <string>

namespace ftsync::testing {

class ScratchDir {
 public:
  // Creates `<base>/<prefix>-XXXXXX`. With base "", /dev/shm when it is
  // writable (guest RAM files want tmpfs), else /tmp. path() is "" when
  // the directory could not be made.
  explicit ScratchDir(const std::string& prefix, const std::string& base = "");
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// 0 when no port could be had.
int FreeLoopbackPort();

}  // namespace ftsync::testing

#endif  // FTSYNC_TESTING_HOST_RESOURCES_H_
