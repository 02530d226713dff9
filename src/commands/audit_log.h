// AuditLog: the node's audit.jsonl, one JSON record a line, appended as commands come and go.
// A record is written whole or not at all: when the disk takes only part of one (full, or gone
// read-only), the part is cut off again, so no line is left cut mid-JSON; the failure is
// reported with the system's reason (the caller logs and counts it) and the next record is
// tried afresh, so the log grows again as soon as there is room. A record cut by a crash of an
// earlier run is removed when the log is opened, so the next record starts a line of its own.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/unique_fd.h"

namespace nex::commands {

class AuditLog {
 public:
  explicit AuditLog(std::filesystem::path path) : path_(std::move(path)) {}

  // Appends `record` (one line of JSON, without its newline). Thread-safe.
  Status append(std::string_view record);
  const std::filesystem::path& path() const { return path_; }

 private:
  // Opens the log for appending and removes a cut record at its end.
  Status open_locked();

  std::filesystem::path path_;
  std::mutex mu_;  // guards fd_
  UniqueFd fd_;
};

}  // namespace nex::commands
