#include "node/preflight.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <fstream>

#include "core/file_io.h"
#include "core/subprocess.h"
#include "microvm/guest_image.h"
#include "microvm/microvm_driver.h"
#include "nats/local_server.h"
#include "sandbox/cgroup.h"
#include "sandbox/cni.h"
#include "sandbox/namespace_driver.h"
#include "sandbox/rootfs.h"

namespace nex::node {
namespace fs = std::filesystem;

namespace {

PreflightItem found(const std::string& what, const std::string& description) {
  return {true, what, description, ""};
}
PreflightItem missing(const std::string& what, const std::string& description, std::string fix) {
  return {false, what, description, std::move(fix)};
}

// A guest file the microVMs' VMMs must open, checked as they would (microvm only; the namespace
// driver reads its root filesystem as root).
PreflightItem vmm_readable(const NodeConfig& config, const fs::path& file,
                           const std::string& description, const std::string& field) {
  if (config.sandbox != "microvm") return found(file.string(), description);
  auto st = microvm::check_readable_by_vmms(file, field);
  return st ? found(file.string(), description)
            : missing(file.string(), description, st.error().message);
}

PreflightSection cni_plugins(const NodeConfig& config) {
  PreflightSection s{"Required CNI Plugins", config.cni.bin_path, {}};
  std::vector<std::string> types = {"host-local", "ptp"};
  if (auto net = sandbox::load_cni_network(config.cni)) types = net->plugin_types();
  for (const auto& type : types) {
    auto p = sandbox::find_cni_plugin(config.cni, type);
    s.items.push_back(
        p ? found(p->string(), type + " CNI plugin")
          : missing(type, type + " CNI plugin",
                    "apt-get install containernetworking-plugins, or set cni.bin_path"));
  }
  return s;
}

PreflightSection binaries(const fs::path& agent_binary, bool cni) {
  PreflightSection s{"Required binaries", {}, {}};
  auto nats = nats::LocalNatsServer::find_binary();
  s.items.push_back(nats ? found(nats->string(), "NATS server, for the internal NATS")
                         : missing("nats-server", "NATS server, for the internal NATS",
                                   "apt-get install nats-server"));
  s.items.push_back(access(agent_binary.c_str(), X_OK) == 0
                        ? found(agent_binary.string(), "nex agent")
                        : missing(agent_binary.string(), "nex agent",
                                  "install nex-agent next to the nex binary"));
  if (!cni) return s;  // iptables serves CNI's ipMasq and the namespace sandbox's firewall
  const std::string what = "the sandbox firewall, and masquerading for ipMasq networks";
  const bool iptables =
      find_program("iptables").has_value() && find_program("iptables-restore").has_value();
  s.items.push_back(iptables ? found("iptables", what)
                             : missing("iptables", what, "apt-get install iptables"));
  return s;
}

PreflightSection kernel() {
  PreflightSection s{"Kernel features", {}, {}};
  s.items.push_back(geteuid() == 0 ? found("uid 0", "root, to make namespaces and cgroups")
                                   : missing("uid " + std::to_string(geteuid()),
                                             "root, to make namespaces and cgroups",
                                             "run the node as root, or set \"no_sandbox\": true"));
  for (const char* ns : {"mnt", "pid", "net", "ipc", "uts", "cgroup"}) {
    const std::string path = std::string("/proc/self/ns/") + ns;
    s.items.push_back(fs::exists(path) ? found(path, std::string(ns) + " namespace")
                                       : missing(path, std::string(ns) + " namespace",
                                                 "a kernel built with namespaces"));
  }
  const bool seccomp = prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
  s.items.push_back(seccomp ? found("seccomp", "system-call filter")
                            : missing("seccomp", "system-call filter",
                                      "a kernel built with CONFIG_SECCOMP_FILTER"));
  auto cg = sandbox::Cgroup::host_version();
  s.items.push_back(
      cg ? found("/sys/fs/cgroup (" + *cg + ")", "cgroups: memory, cpu, pids")
         : missing("/sys/fs/cgroup", "cgroups: memory, cpu, pids", cg.error().message));
  s.items.push_back(fs::exists("/dev/loop-control")
                        ? found("/dev/loop-control", "loop devices, to mount an ext4 rootfs")
                        : missing("/dev/loop-control", "loop devices, to mount an ext4 rootfs",
                                  "modprobe loop, or give rootfs_filepath as a directory"));
  return s;
}

PreflightSection cni_config(const NodeConfig& config) {
  PreflightSection s{"CNI configuration requirements", {config.cni.conf_dir.string()}, {}};
  auto net = sandbox::load_cni_network(config.cni);
  const std::string file = (config.cni.conf_dir / (config.cni.network_name + ".conflist")).string();
  s.items.push_back(net ? found(file, "CNI Configuration")
                        : missing(file, "CNI Configuration", net.error().message));
  return s;
}

// What the sandboxes' network reaches: said even when it passes, since "open" is a choice.
PreflightSection network_reach(const NodeConfig& config) {
  PreflightSection s{"Sandbox network", {}, {}};
  const std::string what = "\"sandbox_network\": \"" + config.sandbox_network + "\"";
  if (config.sandbox_network == "open") {
    PreflightItem open = found(what, "sandboxes reach every port of this host and of one another");
    open.notice = true;
    open.fix = "\"sandbox_network\": \"filtered\" (the default) keeps them to the internal NATS";
    s.items.push_back(open);
  } else {
    s.items.push_back(found(what,
                            "sandboxes reach the internal NATS and other hosts, no other "
                            "port of this host nor other sandboxes"));
  }
  return s;
}

PreflightSection user_files(const NodeConfig& config, const fs::path& agent_binary) {
  PreflightSection s{"User provided files", {}, {}};
  const fs::path& rootfs = config.rootfs_filepath;
  const std::string desc = "Root Filesystem Template";
  const std::string build =
      "`nex node preflight --init` or `nex rootfs -o " + rootfs.string() + "`";
  if (config.sandbox == "microvm" && fs::is_directory(rootfs)) {
    s.items.push_back(
        missing(rootfs.string(), desc, "a microVM boots an ext4 image; build one with " + build));
  } else if (fs::is_directory(rootfs)) {
    auto lacking = sandbox::missing_agent_file(rootfs, agent_binary);
    if (!lacking) {
      s.items.push_back(missing(rootfs.string(), desc, lacking.error().message));
    } else if (*lacking) {
      s.items.push_back(missing(rootfs.string(), desc,
                                "lacks " + (*lacking)->string() + ", which the agent needs"));
    } else {
      s.items.push_back(found(rootfs.string(), desc));
    }
  } else if (sandbox::is_ext4_image(rootfs)) {
    s.items.push_back(vmm_readable(config, rootfs, desc, "rootfs_filepath"));
  } else {
    s.items.push_back(missing(rootfs.string(), desc,
                              fs::exists(rootfs) ? "not an ext4 image; rebuild it with " + build
                                                 : "missing; build it with " + build));
  }
  return s;
}

// The microvm driver's own needs: the VMM and gateway, an accelerator, and the guest's files.
PreflightSection virtualization(const NodeConfig& config, const fs::path& agent_binary) {
  PreflightSection s{"MicroVM requirements", {}, {}};
  s.items.push_back(geteuid() == 0 ? found("uid 0", "root, to run each VMM as a user of its own")
                                   : missing("uid " + std::to_string(geteuid()),
                                             "root, to run each VMM as a user of its own",
                                             "run the node as root"));
  const bool qemu = find_program(microvm::MicrovmOptions{}.qemu).has_value();
  s.items.push_back(qemu ? found("qemu-system-x86_64", "the VMM (QEMU's microvm machine)")
                         : missing("qemu-system-x86_64", "the VMM (QEMU's microvm machine)",
                                   "apt-get install qemu-system-x86"));
  const fs::path gateway = agent_binary.parent_path() / "nex-vm-gateway";
  s.items.push_back(access(gateway.c_str(), X_OK) == 0
                        ? found(gateway.string(), "the VMs' gateway to the host")
                        : missing(gateway.string(), "the VMs' gateway to the host",
                                  "install nex-vm-gateway next to the nex binary"));
  if (config.microvm_accelerator == "kvm" && !microvm::kvm_usable()) {
    s.items.push_back(missing("/dev/kvm", "KVM (\"microvm_accelerator\": \"kvm\")",
                              "a host with KVM, or \"microvm_accelerator\": \"auto\""));
  } else {
    const auto choice = config.microvm_accelerator == "auto"
                            ? microvm::choose_accelerator()
                            : microvm::AcceleratorChoice{config.microvm_accelerator, "configured"};
    s.items.push_back(found("accelerator " + choice.accelerator, choice.reason));
  }
  const fs::path& kernel = config.kernel_filepath;
  s.items.push_back(
      microvm::is_elf_kernel(kernel)
          ? vmm_readable(config, kernel, "Kernel (ELF vmlinux)", "kernel_filepath")
          : missing(kernel.string(), "Kernel (ELF vmlinux)",
                    fs::exists(kernel)
                        ? "not an x86-64 ELF kernel; `nex node preflight --init` makes one"
                        : "missing; `nex node preflight --init` makes one from Debian's kernel "
                          "package"));
  const fs::path& initrd = config.initrd_filepath;
  s.items.push_back(fs::exists(initrd)
                        ? vmm_readable(config, initrd, "initramfs (virtio modules)",
                                       "initrd (beside kernel_filepath)")
                        : missing(initrd.string(), "initramfs (virtio modules)",
                                  "missing; `nex node preflight --init` makes it with the kernel"));
  return s;
}

}  // namespace

std::vector<PreflightSection> preflight(const NodeConfig& config, const fs::path& agent_binary) {
  if (config.no_sandbox) {
    // The process driver needs only the binaries.
    return {binaries(agent_binary, /*cni=*/false)};
  }
  if (config.sandbox == "microvm") {
    // A VM has a kernel and network of its own: no namespaces, cgroups or CNI on the host.
    auto files = user_files(config, agent_binary);
    return {binaries(agent_binary, /*cni=*/false), virtualization(config, agent_binary), files};
  }
  return {cni_plugins(config),   binaries(agent_binary, /*cni=*/true), kernel(), cni_config(config),
          network_reach(config), user_files(config, agent_binary)};
}

bool preflight_passes(const NodeConfig& config, const fs::path& agent_binary) {
  for (const auto& section : preflight(config, agent_binary))
    for (const auto& item : section.items)
      if (!item.ok) return false;
  return true;
}

Result<std::vector<std::string>> preflight_init(const NodeConfig& config,
                                                const fs::path& agent_binary) {
  std::vector<std::string> done;
  if (config.no_sandbox) return done;
  if (config.sandbox == "microvm") {
    if (!microvm::is_elf_kernel(config.kernel_filepath) || !fs::exists(config.initrd_filepath)) {
      auto k = microvm::install_debian_kernel(microvm::kDebianKernelPackage, config.kernel_filepath,
                                              config.initrd_filepath);
      if (!k) return fail(k.error().wrap("prepare the guest kernel"));
      done.push_back("Wrote " + k->vmlinux.string() + " and " + k->initrd.string() + " (" +
                     std::to_string(k->modules) + " modules) from " + k->package);
    }
  }
  const fs::path conflist = config.cni.conf_dir / (config.cni.network_name + ".conflist");
  if (config.sandbox != "microvm" && !fs::exists(conflist)) {
    std::error_code ec;
    fs::create_directories(config.cni.conf_dir, ec);
    NEX_RETURN_IF_ERROR(
        write_file(conflist, sandbox::default_conflist(config.cni.network_name).dump(2) + "\n"));
    done.push_back("Wrote " + conflist.string() +
                   " (ptp + host-local on 192.168.127.0/24, ipMasq)");
  }
  if (!fs::exists(config.rootfs_filepath)) {
    auto r =
        sandbox::build_rootfs({.agent_binary = agent_binary, .output = config.rootfs_filepath});
    if (!r) return fail(r.error().wrap("build " + config.rootfs_filepath.string()));
    done.push_back("Built " + config.rootfs_filepath.string() + " (" +
                   std::to_string(r->image_mib) + " MiB)");
  }
  return done;
}

}  // namespace nex::node
