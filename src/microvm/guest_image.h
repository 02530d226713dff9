// The guest a microVM boots: a Linux kernel from Debian's kernel packages, uncompressed to the
// ELF `vmlinux` the seeds name (QEMU boots it through its PVH entry, Firecracker as is), and a
// small initramfs that loads the virtio modules Debian builds as modules, mounts the root
// filesystem image read-only and hands over to its /sbin/init. Nothing here needs root or a
// loop mount: the package is fetched with `apt-get download` and unpacked with `dpkg-deb -x`.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"

namespace nex::microvm {

// The modules the guest needs before its root filesystem is mounted, in no particular order
// (they are loaded in the order their `depends=` fields require).
inline const std::vector<std::string> kGuestModules = {
    "virtio_ring",  "virtio",     "virtio_mmio", "virtio_blk", "failover",
    "net_failover", "virtio_net", "qemu_fw_cfg", "virtio-rng", "virtio_balloon"};

// What `nex node preflight --init` installs: Debian's kernel for cloud VMs (virtio as modules,
// no hardware drivers to probe).
inline constexpr const char* kDebianKernelPackage = "linux-image-cloud-amd64";

struct GuestKernelReport {
  std::string package;  // linux-image-6.1.0-57-cloud-amd64
  std::string version;  // 6.1.0-57-cloud-amd64
  std::filesystem::path vmlinux;
  std::filesystem::path initrd;
  size_t modules = 0;
};

// Downloads `package` (a Debian kernel image package or a meta-package depending on one, such as
// linux-image-cloud-amd64), writes `vmlinux` and `initrd` from it, and returns what it wrote.
Result<GuestKernelReport> install_debian_kernel(
    const std::string& package, const std::filesystem::path& vmlinux,
    const std::filesystem::path& initrd, const std::filesystem::path& busybox = "/bin/busybox");

// The ELF kernel inside a bzImage: its payload (the setup header says where), decompressed by
// the tool its magic names (lz4, xz, zstd or gzip).
Status extract_vmlinux(const std::filesystem::path& bzimage, const std::filesystem::path& out);

// An initramfs (cpio "newc") holding a static busybox, the modules of `modules_dir` named by
// `wanted` and those they depend on, and /init, which loads them in dependency order. Returns
// how many modules it holds.
Result<size_t> build_initrd(const std::filesystem::path& modules_dir,
                            const std::filesystem::path& busybox, const std::filesystem::path& out,
                            const std::vector<std::string>& wanted = kGuestModules);

// True when `path` is a 64-bit x86 ELF executable (a kernel QEMU and Firecracker boot directly).
bool is_elf_kernel(const std::filesystem::path& path);

}  // namespace nex::microvm
