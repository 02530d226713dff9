// The microvm driver: each agent (and its workload) runs in a virtual machine of its own, with
// its own Linux kernel, so a kernel exploit in a workload stays inside its VM. The VMM is QEMU's
// `microvm` machine (Debian's qemu-system-x86): no PCI, no firmware to speak of, virtio-mmio
// devices only.
//
// - Kernel and initramfs: `kernel_filepath` (an ELF vmlinux, booted through its PVH entry) and
//   the initramfs beside it, both made from Debian's kernel package (src/microvm/guest_image.h).
// - Root filesystem: `rootfs_filepath` (from `nex rootfs`), attached read-only; every VM boots the
//   same image and none can write it. /tmp is a tmpfs inside the VM.
// - machine_template: `vcpu_count` vCPUs and `memsize_mib` of guest memory.
// - Bootstrap (workload id, internal NATS address, the agent's seed) goes in a fw_cfg blob the
//   guest's init reads as root before it becomes the agent as nobody; it is not on the kernel
//   command line, which any guest process can read.
// - Network: QEMU's user network with `restrict=on`, so the guest reaches nothing on the host or
//   beyond, except through the gateway (10.0.2.100): the internal NATS at its own port, and the
//   host loopback ports the node exposes to this VM. QEMU starts nex-vm-gateway per connection,
//   which hands it to the driver's gateway server (gateway_server.h) and exits; the server caps
//   each VM's connections at `gateway_max_connections`.
// - Accelerator: KVM where the CPU has hardware virtualization; otherwise QEMU's TCG, with the
//   reason printed. (`microvm_accelerator` in the node configuration forces one.)
// - The VMM runs as nobody, dies with the node (SIGKILL on the node's death), and a node that
//   starts finds the pid files its killed predecessor left and stops those VMs.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/subprocess.h"
#include "microvm/gateway_server.h"
#include "sandbox/driver.h"

namespace nex::microvm {

inline constexpr const char* kGatewayAddress = "10.0.2.100";  // the host, as the guest sees it
// The gateway port for exposed host ports: below the ephemeral range the internal NATS's
// (random) port comes from, so the two never collide.
inline constexpr int kExposedPortsGateway = 999;

struct MicrovmOptions {
  std::string instance;  // names this node's state directory
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::filesystem::path rootfs;
  std::filesystem::path gateway_binary;  // nex-vm-gateway
  std::string qemu = "qemu-system-x86_64";
  int vcpus = 1;
  int64_t memory_mib = 256;
  std::string accelerator = "auto";  // "auto", "kvm" or "tcg"
  std::filesystem::path state_root = "/run/nex";
  int gateway_max_connections = 64;  // per VM, at once
  // What the node tells about a workload's VM (connections refused over the cap); may be empty.
  GatewayServer::Warn warn_workload;
};

// Whether the VMMs, which run as users of their own (no group of the host's), can open `path`
// for reading: a file readable by all in a folder only its owner may enter is not. Checked as
// such a user when the caller is root; from the permission bits of the file and of every
// folder above it otherwise. The error names `field`, the path and the fix.
Status check_readable_by_vmms(const std::filesystem::path& path, const std::string& field);

// Which accelerator "auto" means on this host, and why.
struct AcceleratorChoice {
  std::string accelerator;  // "kvm" or "tcg"
  std::string reason;
};
AcceleratorChoice choose_accelerator();
// Whether /dev/kvm can be opened and answers KVM_GET_API_VERSION.
bool kvm_usable();

class MicrovmDriver : public sandbox::Driver {
 public:
  // Checks the VMM, kernel, initramfs and rootfs, settles the accelerator, and stops the VMs a
  // killed predecessor left running.
  static Result<std::unique_ptr<MicrovmDriver>> create(MicrovmOptions options);
  // Removes the node's VM state directory (its sandboxes are stopped by then).
  ~MicrovmDriver() override;

  std::string_view name() const override { return "microvm"; }
  bool sandboxed() const override { return true; }
  bool reaches_other_hosts() const override { return false; }
  std::string details() const override {
    return "accelerator " + accelerator_ + ": " + accelerator_reason_;
  }
  std::chrono::milliseconds boot_allowance() const override;
  bool passes_descriptors() const override { return false; }  // its own kernel
  Result<std::unique_ptr<sandbox::Sandbox>> start(const sandbox::SandboxSpec& spec) override;

  const MicrovmOptions& options() const { return options_; }
  const std::string& accelerator() const { return accelerator_; }
  std::filesystem::path pid_dir() const { return options_.state_root / options_.instance / "vms"; }

 private:
  explicit MicrovmDriver(MicrovmOptions options) : options_(std::move(options)) {}
  void stop_leftovers();
  // The VMM's command line for `spec`'s VM, whose state is in `vm_dir` and whose gateway
  // listens on `socket`.
  std::vector<std::string> qemu_argv(const sandbox::SandboxSpec& spec,
                                     const std::filesystem::path& vm_dir,
                                     const std::filesystem::path& socket) const;
  // How the VMM runs: as `uid`, with /dev/kvm's group when it needs it, logging to the spec's
  // log file.
  SpawnOptions vmm_spawn_options(std::vector<std::string> argv, const sandbox::SandboxSpec& spec,
                                 uid_t uid) const;

  MicrovmOptions options_;
  std::unique_ptr<GatewayServer> gateway_;
  std::string accelerator_;
  std::string accelerator_reason_;
  int64_t tsc_khz_ = 0;  // TCG: the guest's TSC runs at the host's rate; telling it saves a hang
};

}  // namespace nex::microvm
