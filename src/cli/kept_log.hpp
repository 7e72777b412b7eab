#pragma once
// The log of one dump or restore, kept in the store's logs/ folder when it fails, so that a
// refusal can be understood after the fact: every log line of every process of the operation
// (at debug level, whatever -v says) goes to STORE/logs/KIND-TIME-PID.log; success removes the
// file, failure keeps it and the error line names it. docs/logging.md.
#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/scoped_fd.hpp"

namespace ckpt::cli {

class KeptLog {
 public:
  // The newest logs kept in a store's logs/ folder; older ones are removed.
  static constexpr size_t kMaxLogs = 20;

  KeptLog() = default;
  KeptLog(KeptLog&&) = default;
  KeptLog& operator=(KeptLog&&) = default;
  ~KeptLog() { discard(); }

  // Starts capturing. `command` is the command line, written first. When the folder cannot be
  // written (a read-only store), nothing is kept and the operation runs as usual.
  static KeptLog start(const std::filesystem::path& store_dir, std::string_view kind,
                       std::string_view command);

  // The operation succeeded: the file goes.
  void discard();
  // The operation failed with `error`: it is written last and the file stays. Returns the
  // error with " (log: PATH)" added when there is a file; path() still names it.
  Error keep(const Error& error);

  const std::filesystem::path& path() const { return path_; }

 private:
  ScopedFd fd_;
  std::filesystem::path path_;
};

}  // namespace ckpt::cli
