// ftd's logger: timestamped lines on stderr, with a component name; warnings
// of the same text are rate-limited so a lost peer does not flood the log.
#ifndef FTSYNC_FTD_LOG_H_
#define FTSYNC_FTD_LOG_H_

#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "ftsync/logger.h"

namespace ftd {

class StderrLogger : public ftsync::Logger {
 public:
  explicit StderrLogger(std::string name) : name_(std::move(name)) {}
  void Log(ftsync::LogLevel level, std::string_view msg) override {
    static const char* kNames[] = {"debug", "info", "WARNING", "ERROR"};
    std::lock_guard<std::mutex> l(mu_);
    auto now = std::chrono::steady_clock::now();
    std::string key(msg);
    auto it = last_.find(key);
    if (level == ftsync::LogLevel::kWarning && it != last_.end() && now - it->second < std::chrono::seconds(10))
      return;
    last_[key] = now;
    if (last_.size() > 256) last_.clear();
    auto t = std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch()).count();
    std::fprintf(stderr, "%lld.%03lld ftd %s %s: %.*s\n", static_cast<long long>(t / 1000),
                 static_cast<long long>(t % 1000), name_.c_str(), kNames[static_cast<int>(level)],
                 static_cast<int>(msg.size()), msg.data());
  }
  void Info(std::string_view m) { Log(ftsync::LogLevel::kInfo, m); }
  void Warn(std::string_view m) { Log(ftsync::LogLevel::kWarning, m); }
  void Error(std::string_view m) { Log(ftsync::LogLevel::kError, m); }

 private:
  std::string name_;
  std::mutex mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_;
};

}  // namespace ftd

#endif  // FTSYNC_FTD_LOG_H_
