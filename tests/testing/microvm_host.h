// What the microVM tests need from this host: root, QEMU, and a guest made for this test
// process: Debian's kernel package unpacked into a vmlinux and an initramfs, and a root
// filesystem image built from this build's agent, all in a temporary directory of its own (a
// test never uses what an earlier run or `nex node preflight --init` left in /tmp/wd). Tests
// that cannot have it skip, saying why.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "microvm/guest_image.h"
#include "microvm/microvm_driver.h"
#include "node/node_config.h"
#include "node/preflight.h"
#include "sandbox/rootfs.h"

namespace nex::testing {

class MicrovmHost {
 public:
  static const MicrovmHost& get() {
    static MicrovmHost host;
    return host;
  }
  const std::optional<std::string>& unavailable() const { return unavailable_; }
  node::NodeConfig config(int64_t memsize_mib = 256) const {
    node::NodeConfig c = base_;
    c.machine_template.memsize_mib = memsize_mib;
    return c;
  }
  const std::string& kernel_release() const { return release_; }
  const std::string& accelerator() const { return accelerator_; }

 private:
  MicrovmHost() {
    namespace fs = std::filesystem;
    const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path();
    dir_ = fs::temp_directory_path() / ("nex-microvm-host-" + std::to_string(getpid()));
    std::error_code ec;
    fs::create_directories(dir_, ec);
    fs::permissions(dir_, fs::perms(0755), ec);  // the VMMs run as users of their own
    base_.no_sandbox = false;
    base_.sandbox = "microvm";
    base_.kernel_filepath = dir_ / "vmlinux";
    base_.initrd_filepath = dir_ / "initrd.img";
    base_.rootfs_filepath = dir_ / "rootfs.ext4";
    if (geteuid() != 0) {
      unavailable_ = "the microvm sandbox needs root";
      return;
    }
    auto kernel = microvm::install_debian_kernel(microvm::kDebianKernelPackage,
                                                 base_.kernel_filepath, base_.initrd_filepath);
    if (!kernel) {
      unavailable_ = "cannot make a guest kernel from Debian's package: " + kernel.error().message;
      return;
    }
    release_ = kernel->version;
    if (auto r = sandbox::build_rootfs(
            {.agent_binary = bin / "nex-agent", .output = base_.rootfs_filepath});
        !r) {
      unavailable_ = "cannot build a root filesystem: " + r.error().message;
      return;
    }
    fs::permissions(base_.rootfs_filepath, fs::perms(0644), ec);
    for (const auto& section : node::preflight(base_, bin / "nex-agent"))
      for (const auto& item : section.items)
        if (!item.ok && !unavailable_)
          unavailable_ = "preflight: " + item.what + " [" + item.description + "]: " + item.fix;
    accelerator_ = microvm::choose_accelerator().accelerator;
  }
  ~MicrovmHost() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::filesystem::path dir_;
  node::NodeConfig base_;
  std::string release_;
  std::string accelerator_;
  std::optional<std::string> unavailable_;
};

#define NEX_REQUIRE_MICROVM_SANDBOX()                                                            \
  do {                                                                                           \
    if (const char* nex_skip_ = std::getenv("NEX_TEST_SKIP_SANDBOXES"); nex_skip_ && *nex_skip_) \
      GTEST_SKIP()                                                                               \
          << "microvm sandbox not used: NEX_TEST_SKIP_SANDBOXES is set (the sanitizer run)";     \
    if (const auto& why = ::nex::testing::MicrovmHost::get().unavailable())                      \
      GTEST_SKIP() << "microvm sandbox unavailable here: " << *why;                              \
  } while (0)

}  // namespace nex::testing
