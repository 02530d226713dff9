// Writing files so that a failure says why. "cannot write X" alone leaves the user guessing; the
// system's reason (strerror: a full disk, no permission, a missing directory) tells them what to
// fix. A file that was created but could not be written whole is removed, so no empty or cut
// file is left for the next run to misread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "core/error.h"

namespace nex {

// kIo: "cannot VERB PATH: REASON", REASON being strerror(err).
Error file_error(std::string_view verb, const std::filesystem::path& path, int err);

// Writes all of `data` to `fd`, going on after short writes. False with errno set when the
// system takes no more (a short write on a full disk ends in ENOSPC).
bool write_all(int fd, std::string_view data);

// The whole content of `path`, bytes as they are. On failure: "cannot read PATH: REASON".
Result<std::string> read_file(const std::filesystem::path& path);

struct WriteFileOptions {
  mode_t mode = 0644;      // of a file it creates
  bool exclusive = false;  // refuse (EEXIST) when the file exists
  bool sync = false;       // on disk (fsync) before returning
};

// Makes `data` the whole content of `path`. On failure the file is gone (it was only ever
// ours to write), and the error names it and the system's reason.
Status write_file(const std::filesystem::path& path, std::string_view data,
                  const WriteFileOptions& options = {});

}  // namespace nex
