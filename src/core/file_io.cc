#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/unique_fd.h"

namespace nex {

Error file_error(std::string_view verb, const std::filesystem::path& path, int err) {
  return Error{ErrorCode::kIo,
               "cannot " + std::string(verb) + " " + path.string() + ": " + std::strerror(err)};
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

Result<std::string> read_file(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::unexpected(file_error("read", path, errno));
  std::string data;
  struct stat st {};
  // A size known ahead saves the regrowing; /proc and /sys files say 0 and are read all the same.
  if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) data.reserve(static_cast<size_t>(st.st_size));
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return data;
    } else if (errno != EINTR) {
      return std::unexpected(file_error("read", path, errno));
    }
  }
}

Status write_file(const std::filesystem::path& path, std::string_view data,
                  const WriteFileOptions& options) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (options.exclusive ? O_EXCL : O_TRUNC);
  UniqueFd fd(::open(path.c_str(), flags, options.mode));
  if (!fd.valid()) return std::unexpected(file_error("create", path, errno));
  if (!write_all(fd.get(), data) || (options.sync && ::fsync(fd.get()) != 0) ||
      ::close(fd.release()) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    return std::unexpected(file_error("write", path, err));
  }
  return {};
}

}  // namespace nex
