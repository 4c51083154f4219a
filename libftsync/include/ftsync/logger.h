// ftsync: the library never prints; it reports through an injected Logger.
#ifndef FTSYNC_LOGGER_H_
#define FTSYNC_LOGGER_H_

#include <string_view>

namespace ftsync {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

class Logger {
 public:
  virtual ~Logger() = default;
  virtual void Log(LogLevel level, std::string_view message) = 0;
};

// A logger that discards everything (the default).
Logger* NullLogger();

}  // namespace ftsync

#endif  // FTSYNC_LOGGER_H_
