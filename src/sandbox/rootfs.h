// `nex rootfs`: the root filesystem a sandbox runs in, built without Docker or loop mounts. It
// holds the agent and the libraries it loads, a static busybox (a shell and the usual tools for
// whoever debugs a sandbox), an init for machines that boot (microVMs), and the mount points the
// namespace driver uses (/proc, /tmp, /dev, /nex). The image is ext4, written by
// `mkfs.ext4 -d` straight from a staging directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "core/error.h"

namespace nex::sandbox {

struct RootfsOptions {
  std::filesystem::path agent_binary;
  std::filesystem::path output;  // the ext4 image to write (replaced if present)
  int64_t size_mib = 0;          // 0: the content plus room to spare
  std::filesystem::path busybox = "/bin/busybox";
};

struct RootfsReport {
  int64_t content_bytes = 0;
  int64_t image_mib = 0;
  size_t libraries = 0;
};

Result<RootfsReport> build_rootfs(const RootfsOptions& options);
// Fills `dir` with the root filesystem's tree (what build_rootfs packs into the image).
Result<RootfsReport> build_rootfs_tree(const RootfsOptions& options,
                                       const std::filesystem::path& dir);
// The libraries a dynamically linked binary loads (absolute paths, as the loader names them),
// the loader included; from ldd.
Result<std::vector<std::filesystem::path>> shared_libraries(const std::filesystem::path& binary);
// The first file the agent needs (its libraries, /sbin/nex-agent) that the root filesystem
// directory `root` lacks; nullopt when it has them all.
Result<std::optional<std::filesystem::path>> missing_agent_file(
    const std::filesystem::path& root, const std::filesystem::path& agent_binary);
// True when `path` starts with an ext2/3/4 superblock.
bool is_ext4_image(const std::filesystem::path& path);

}  // namespace nex::sandbox
