#include "core/file_io.h"

#include <fcntl.h>
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
