#include "commands/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "core/file_io.h"

namespace nex::commands {

namespace {

// The length of the file up to and including its last newline: where a cut last record starts.
Result<off_t> end_of_last_line(int fd, off_t size, const std::filesystem::path& path) {
  char buf[4096];
  constexpr auto kChunk = static_cast<off_t>(sizeof buf);
  for (off_t end = size; end > 0;) {
    const off_t start = end > kChunk ? end - kChunk : 0;
    const ssize_t n = ::pread(fd, buf, static_cast<size_t>(end - start), start);
    if (n < 0) return std::unexpected(file_error("read", path, errno));
    if (n != end - start) return std::unexpected(file_error("read", path, EIO));
    for (ssize_t i = n; i > 0; --i) {
      if (buf[i - 1] == '\n') return start + i;
    }
    end = start;
  }
  return 0;
}

}  // namespace

Status AuditLog::open_locked() {
  UniqueFd fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fd.valid()) return std::unexpected(file_error("open", path_, errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return std::unexpected(file_error("read", path_, errno));
  if (st.st_size > 0) {
    char last = 0;
    if (::pread(fd.get(), &last, 1, st.st_size - 1) != 1)
      return std::unexpected(file_error("read", path_, errno));
    if (last != '\n') {
      auto keep = end_of_last_line(fd.get(), st.st_size, path_);
      if (!keep) return std::unexpected(keep.error());
      if (::ftruncate(fd.get(), *keep) != 0)
        return std::unexpected(file_error("cut the unfinished record of", path_, errno));
    }
  }
  fd_ = std::move(fd);
  return {};
}

Status AuditLog::append(std::string_view record) {
  std::string line(record);
  line += '\n';
  std::lock_guard lock(mu_);
  if (!fd_.valid()) NEX_RETURN_IF_ERROR(open_locked());
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) return std::unexpected(file_error("append to", path_, errno));
  // One writer (this one, under mu_): the file ends at st_size until we write.
  if (write_all(fd_.get(), line)) return {};
  const int err = errno;
  if (::ftruncate(fd_.get(), st.st_size) != 0) {
    // The part that went in stays for now: the next append opens the log again, which cuts it.
    fd_.reset();
  }
  return std::unexpected(file_error("append to", path_, err));
}

}  // namespace nex::commands
