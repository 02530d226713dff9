#include "sandbox/rootfs.h"

#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/file_io.h"
#include "core/subprocess.h"
#include "sandbox/namespace_driver.h"

namespace nex::sandbox {
namespace fs = std::filesystem;

namespace {

Status write_text(const fs::path& path, const std::string& text, fs::perms perms) {
  std::ofstream out(path);
  out << text;
  if (!out) return std::unexpected(file_error("write", path, errno));
  out.close();
  std::error_code ec;
  fs::permissions(path, perms, ec);
  return {};
}

Status copy_into(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  fs::copy_file(fs::canonical(from, ec), to, fs::copy_options::overwrite_existing, ec);
  if (ec) return fail(ErrorCode::kIo, "cannot copy " + from.string() + ": " + ec.message());
  return {};
}

int64_t tree_bytes(const fs::path& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file(ec) && !e.is_symlink(ec)) total += static_cast<int64_t>(e.file_size(ec));
    total += 4096;  // inodes and directory blocks, roughly
  }
  return total;
}

constexpr const char* kInit = R"(#!/bin/sh
# init for sandboxes that boot a kernel (nex's microvm driver): mount what the agent needs, bring
# up the VM's network, read the agent's bootstrap from the VM's firmware config (readable by root
# alone), then become the agent as nobody. The namespace driver starts /sbin/nex-agent directly.
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
ip link set lo up
ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
boot=/sys/firmware/qemu_fw_cfg/by_name/opt/nex/bootstrap/raw
if [ ! -r "$boot" ]; then echo "nex init: no bootstrap at $boot"; exit 1; fi
while IFS= read -r line; do [ -n "$line" ] && export "$line"; done < "$boot"
umount /sys
# What the namespace sandbox's cgroup and seccomp filter deny, the guest kernel denies too:
# at most 512 processes, no user namespaces.
echo 0 > /proc/sys/user/max_user_namespaces
ulimit -u 512
exec su -p -s /sbin/nex-agent nobody
)";

}  // namespace

Result<std::vector<fs::path>> shared_libraries(const fs::path& binary) {
  auto ldd = run_program({.argv = {"ldd", binary.string()}}, "", std::chrono::seconds(30));
  if (!ldd) return fail(ldd.error().wrap("cannot run ldd"));
  std::vector<fs::path> libs;
  std::istringstream lines(ldd->out);
  for (std::string s; std::getline(lines, s);) {
    const size_t arrow = s.find("=> ");
    size_t start = arrow != std::string::npos ? arrow + 3 : s.find_first_not_of(" \t");
    if (start == std::string::npos || s[start] != '/') continue;
    const size_t end = s.find_first_of(" \t(", start);
    libs.emplace_back(s.substr(start, end - start));
  }
  if (!ldd->succeeded() || libs.empty())
    return fail(ErrorCode::kInvalidArgument,
                binary.string() + " is not a dynamically linked program ldd can read");
  return libs;
}

Result<std::optional<fs::path>> missing_agent_file(const fs::path& root,
                                                   const fs::path& agent_binary) {
  auto needed = shared_libraries(agent_binary);
  if (!needed) return fail(needed.error());
  needed->push_back(kSandboxAgentPath);
  for (const auto& file : *needed) {
    if (!fs::exists(fs::symlink_status(root / file.relative_path()))) return file;
  }
  return std::nullopt;
}

bool is_ext4_image(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char magic[2] = {};
  in.seekg(1024 + 56);
  in.read(reinterpret_cast<char*>(magic), 2);
  return in && magic[0] == 0x53 && magic[1] == 0xEF;
}

Result<RootfsReport> build_rootfs_tree(const RootfsOptions& options, const fs::path& dir) {
  RootfsReport report;
  std::error_code ec;
  for (const char* d :
       {"bin", "sbin", "etc", "proc", "tmp", "dev", "nex", "sys", "root", "usr/bin"})
    fs::create_directories(dir / d, ec);
  if (ec) return fail(ErrorCode::kIo, "cannot create " + dir.string() + ": " + ec.message());
  fs::permissions(dir / "tmp", fs::perms::all | fs::perms::sticky_bit, ec);

  if (access(options.agent_binary.c_str(), X_OK) != 0)
    return fail(ErrorCode::kNotFound, "agent: " + options.agent_binary.string() + " not found");
  NEX_RETURN_IF_ERROR(
      copy_into(options.agent_binary, dir / fs::path(kSandboxAgentPath).relative_path()));
  auto libs = shared_libraries(options.agent_binary);
  if (!libs) return fail(libs.error());
  for (const auto& lib : *libs) NEX_RETURN_IF_ERROR(copy_into(lib, dir / lib.relative_path()));
  report.libraries = libs->size();

  if (access(options.busybox.c_str(), X_OK) != 0)
    return fail(ErrorCode::kNotFound,
                options.busybox.string() + " not found (Debian: busybox-static)");
  NEX_RETURN_IF_ERROR(copy_into(options.busybox, dir / "bin/busybox"));
  for (const char* applet :
       {"sh", "ls",   "cat", "echo", "mount",    "ps",    "env",  "id",    "sleep", "mkdir",
        "rm", "cp",   "mv",  "wc",   "grep",     "head",  "tail", "df",    "free",  "top",
        "ip", "ping", "nc",  "wget", "hostname", "uname", "kill", "dmesg", "su",    "umount"}) {
    fs::create_symlink("busybox", dir / "bin" / applet, ec);
    ec.clear();
  }
  NEX_RETURN_IF_ERROR(write_text(dir / "sbin/init", kInit, fs::perms(0755)));
  NEX_RETURN_IF_ERROR(write_text(dir / "etc/passwd",
                                 "root:x:0:0:root:/root:/bin/sh\n"
                                 "nobody:x:65534:65534:nobody:/tmp:/bin/false\n",
                                 fs::perms(0644)));
  NEX_RETURN_IF_ERROR(
      write_text(dir / "etc/group", "root:x:0:\nnogroup:x:65534:\n", fs::perms(0644)));
  NEX_RETURN_IF_ERROR(
      write_text(dir / "etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", fs::perms(0644)));
  NEX_RETURN_IF_ERROR(write_text(dir / "etc/resolv.conf", "", fs::perms(0644)));
  report.content_bytes = tree_bytes(dir);
  return report;
}

Result<RootfsReport> build_rootfs(const RootfsOptions& options) {
  const fs::path staging = fs::temp_directory_path() / ("nex-rootfs-" + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(staging, ec);
  auto report = build_rootfs_tree(options, staging);
  auto cleanup = [&] { fs::remove_all(staging, ec); };
  if (!report) {
    cleanup();
    return report;
  }
  const int64_t content_mib = (report->content_bytes + (1 << 20) - 1) >> 20;
  const int64_t needed = content_mib + content_mib / 4 + 16;  // ext4's own structures and slack
  if (options.size_mib > 0 && options.size_mib < needed) {
    cleanup();
    return fail(ErrorCode::kInvalidArgument,
                "--size " + std::to_string(options.size_mib) + " MB is too small for " +
                    std::to_string(content_mib) + " MB of content; use at least " +
                    std::to_string(needed));
  }
  report->image_mib = options.size_mib > 0 ? options.size_mib : std::max<int64_t>(64, needed);
  fs::create_directories(options.output.parent_path().empty() ? "." : options.output.parent_path(),
                         ec);
  fs::remove(options.output, ec);
  auto mkfs =
      run_program({.argv = {"mkfs.ext4", "-q", "-F", "-L", "nexroot", "-d", staging.string(),
                            options.output.string(), std::to_string(report->image_mib) + "M"},
                   .env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
                  "", std::chrono::minutes(2));
  std::string why;
  if (!mkfs && mkfs.error().code == ErrorCode::kTimeout) {
    why = "did not finish within 2 minutes, so it was killed";
  } else if (!mkfs) {
    why = mkfs.error().message + " (Debian: e2fsprogs)";
  } else if (!mkfs->succeeded()) {
    why = mkfs->err.empty() ? mkfs->out : mkfs->err;
    if (why.empty()) why = "exited with status " + std::to_string(WEXITSTATUS(mkfs->status));
  }
  cleanup();
  if (!why.empty()) {
    fs::remove(options.output, ec);
    return fail(ErrorCode::kIo, "mkfs.ext4: " + why);
  }
  return report;
}

}  // namespace nex::sandbox
