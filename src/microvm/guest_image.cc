#include "microvm/guest_image.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "core/file_io.h"
#include "core/subprocess.h"

namespace nex::microvm {
namespace fs = std::filesystem;

namespace {

// Runs a tool to completion with `input` on its stdin, in `dir` (if given); returns its stdout.
Result<std::string> run(const std::vector<std::string>& argv, std::string_view input = "",
                        const fs::path& dir = {}) {
  auto r = run_program(
      {.argv = argv,
       .env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"},
       .working_dir = dir},
      input, std::chrono::minutes(5));
  if (!r) return fail(r.error().code == ErrorCode::kTimeout ? r.error() : r.error().wrap(argv[0]));
  if (!r->succeeded()) {
    std::string why = std::move(r->err);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return fail(ErrorCode::kIo, argv[0] + " failed" + (why.empty() ? "" : ": " + why));
  }
  return std::move(r->out);
}

uint32_t le32(const std::string& b, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}

// One cpio "newc" archive, written member by member.
class Cpio {
 public:
  void dir(const std::string& name) { add(name, S_IFDIR | 0755, ""); }
  void file(const std::string& name, mode_t mode, const std::string& data) {
    add(name, S_IFREG | mode, data);
  }
  void symlink(const std::string& name, const std::string& target) {
    add(name, S_IFLNK | 0777, target);
  }
  std::string finish() {
    add("TRAILER!!!", 0, "");
    return std::move(out_);
  }

 private:
  void add(const std::string& name, mode_t mode, const std::string& data) {
    char header[111];
    std::snprintf(header, sizeof header,
                  "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ++ino_,
                  static_cast<unsigned>(mode), 0u, 0u, 1u, 0u, data.size(), 0u, 0u, 0u, 0u,
                  name.size() + 1, 0u);
    out_.append(header, 110);
    out_ += name;
    out_.push_back('\0');
    pad();
    out_ += data;
    pad();
  }
  void pad() { out_.append((4 - out_.size() % 4) % 4, '\0'); }
  std::string out_;
  unsigned ino_ = 0;
};

// /init of the initramfs: load the modules, mount the root image read-only, switch to it.
std::string init_script(const std::vector<std::string>& modules) {
  std::string list;
  for (const auto& m : modules) list += (list.empty() ? "" : " ") + m;
  return R"(#!/bin/busybox sh
# nex microVM initramfs: load the virtio drivers the kernel has as modules, mount the root
# filesystem image (the first disk) read-only, and hand over to its /sbin/init.
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in )" +
         list + R"(; do
  [ -f /lib/modules/$m.ko ] && { /bin/busybox insmod /lib/modules/$m.ko || echo "nex initrd: cannot load $m"; }
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 500 ]; do /bin/busybox usleep 10000; i=$((i+1)); done
if ! /bin/busybox mount -t ext4 -o ro /dev/vda /root; then
  echo "nex initrd: cannot mount the root filesystem /dev/vda"
  /bin/busybox poweroff -f
fi
/bin/busybox umount /dev
exec /bin/busybox switch_root /root /sbin/init
)";
}

}  // namespace

bool is_elf_kernel(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char head[20] = {};
  in.read(head, sizeof head);
  // "\x7fELF", 64-bit, executable, x86-64
  return in &&
         std::memcmp(head,
                     "\x7f"
                     "ELF",
                     4) == 0 &&
         head[4] == 2 && head[16] == 2 && static_cast<unsigned char>(head[18]) == 0x3e;
}

Status extract_vmlinux(const fs::path& bzimage, const fs::path& out) {
  auto read = read_file(bzimage);
  if (!read) return fail(read.error());
  const std::string& image = *read;
  if (image.size() < 0x250 || image.compare(0x202, 4, "HdrS") != 0)
    return fail(ErrorCode::kInvalidArgument, bzimage.string() + " is not a Linux bzImage");
  unsigned setup_sects = static_cast<unsigned char>(image[0x1f1]);
  if (setup_sects == 0) setup_sects = 4;
  const size_t start = (setup_sects + 1) * 512 + le32(image, 0x248);
  const size_t length = le32(image, 0x24c);
  if (start + length > image.size() || length < 16)
    return fail(ErrorCode::kInvalidArgument, bzimage.string() + ": its payload is out of bounds");
  // The build appends the uncompressed size (4 bytes, little-endian) to the compressed data.
  const std::string payload = image.substr(start, length - 4);
  const uint32_t uncompressed = le32(image, start + length - 4);
  struct Format {
    const char* magic;
    size_t size;
    std::vector<std::string> argv;
    const char* package;
  };
  const Format formats[] = {{"\x02\x21\x4c\x18", 4, {"lz4", "-dc"}, "lz4"},
                            {"\xfd"
                             "7zXZ",
                             5,
                             {"xz", "-dc"},
                             "xz-utils"},
                            {"\x28\xb5\x2f\xfd", 4, {"zstd", "-dc"}, "zstd"},
                            {"\x1f\x8b", 2, {"gzip", "-dc"}, "gzip"}};
  for (const auto& f : formats) {
    if (payload.compare(0, f.size, f.magic, f.size) != 0) continue;
    auto kernel = run(f.argv, payload);
    if (!kernel)
      return fail(
          kernel.error().wrap("decompress the kernel (Debian: " + std::string(f.package) + ")"));
    NEX_RETURN_IF_ERROR(write_file(out, *kernel));
    std::error_code ec;
    if (!is_elf_kernel(out) || fs::file_size(out, ec) != uncompressed)
      return fail(ErrorCode::kInvalidArgument,
                  bzimage.string() + ": its payload did not decompress to an x86-64 ELF kernel");
    fs::permissions(out, fs::perms(0644), ec);  // the VMM runs as a user of its own
    return {};
  }
  return fail(ErrorCode::kInvalidArgument,
              bzimage.string() + ": its payload is in a compression nex does not know");
}

Result<size_t> build_initrd(const fs::path& modules_dir, const fs::path& busybox,
                            const fs::path& out, const std::vector<std::string>& wanted) {
  if (access(busybox.c_str(), X_OK) != 0)
    return fail(ErrorCode::kNotFound, busybox.string() + " not found (Debian: busybox-static)");
  // Each wanted module's file and the modules it depends on (its modinfo "depends=").
  std::map<std::string, fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(modules_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 3 && name.compare(name.size() - 3, 3, ".ko") == 0)
      files.emplace(name.substr(0, name.size() - 3), e.path());
  }
  auto depends = [&](const std::string& module) {
    std::vector<std::string> out;
    const std::string body = read_file(files.at(module)).value_or("");
    const size_t at = body.find("depends=");
    if (at == std::string::npos) return out;
    std::istringstream list(body.c_str() + at + 8);
    for (std::string d; std::getline(list, d, ',');) {
      if (!d.empty()) out.push_back(d);
    }
    return out;
  };
  std::vector<std::string> order;
  std::set<std::string> placed;
  std::function<Status(const std::string&, int)> place = [&](const std::string& m,
                                                             int depth) -> Status {
    if (placed.count(m)) return {};
    if (depth > 16) return fail(ErrorCode::kInvalidArgument, "module dependency loop at " + m);
    if (!files.count(m)) return {};  // built into this kernel
    for (const auto& d : depends(m)) NEX_RETURN_IF_ERROR(place(d, depth + 1));
    placed.insert(m);
    order.push_back(m);
    return {};
  };
  for (const auto& m : wanted) NEX_RETURN_IF_ERROR(place(m, 0));

  Cpio cpio;
  for (const char* d : {"bin", "dev", "root", "proc", "sys", "lib", "lib/modules"}) cpio.dir(d);
  auto box = read_file(busybox);
  if (!box) return fail(box.error());
  cpio.file("bin/busybox", 0755, *box);
  cpio.symlink("bin/sh", "busybox");
  for (const auto& m : order) {
    auto module = read_file(files.at(m));
    if (!module) return fail(module.error());
    cpio.file("lib/modules/" + m + ".ko", 0644, *module);
  }
  cpio.file("init", 0755, init_script(order));
  std::ofstream o(out, std::ios::binary | std::ios::trunc);
  o << cpio.finish();
  o.close();
  if (!o) return std::unexpected(file_error("write", out, errno));
  fs::permissions(out, fs::perms(0644), ec);
  return order.size();
}

Result<GuestKernelReport> install_debian_kernel(const std::string& package, const fs::path& vmlinux,
                                                const fs::path& initrd, const fs::path& busybox) {
  const fs::path work = fs::temp_directory_path() / ("nex-kernel-" + std::to_string(getpid()));
  std::error_code ec;
  fs::remove_all(work, ec);
  fs::create_directories(work / "unpacked", ec);
  if (ec) return fail(ErrorCode::kIo, "cannot create " + work.string() + ": " + ec.message());
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{work};

  // A meta-package (linux-image-cloud-amd64) names the versioned package it depends on.
  GuestKernelReport report;
  auto download = [&]() -> Status {
    report.package = package;
    auto depends = run({"apt-cache", "depends", package});
    if (!depends) return fail(depends.error().wrap("look up " + package));
    std::istringstream lines(*depends);
    for (std::string line; std::getline(lines, line);) {
      const size_t at = line.find("Depends: linux-image-");
      if (at != std::string::npos) {
        report.package = line.substr(at + 9);
        break;
      }
    }
    auto got = run({"apt-get", "download", "-q", report.package}, "", work);
    if (!got) return fail(got.error().wrap("download " + report.package));
    return {};
  };
  // Package lists that are missing or stale (the mirror has moved on) are read again, once.
  if (auto st = download(); !st) {
    if (auto updated = run({"apt-get", "update", "-q"}); !updated)
      return fail(st.error().code,
                  st.error().message + "; apt-get update failed too: " + updated.error().message);
    NEX_RETURN_IF_ERROR(download());
  }
  fs::path deb;
  for (const auto& e : fs::directory_iterator(work)) {
    if (e.path().extension() == ".deb") deb = e.path();
  }
  if (deb.empty()) return fail(ErrorCode::kNotFound, "apt-get download left no .deb");
  if (auto x = run({"dpkg-deb", "-x", deb.string(), (work / "unpacked").string()}); !x)
    return fail(x.error());

  fs::path bzimage;
  for (const auto& e : fs::directory_iterator(work / "unpacked/boot", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("vmlinuz-", 0) == 0) {
      bzimage = e.path();
      report.version = name.substr(8);
    }
  }
  if (bzimage.empty())
    return fail(ErrorCode::kNotFound, report.package + " holds no /boot/vmlinuz-*");
  for (const auto& path : {vmlinux, initrd}) fs::create_directories(path.parent_path(), ec);
  const fs::path vmlinux_new = vmlinux.string() + ".new";
  NEX_RETURN_IF_ERROR(extract_vmlinux(bzimage, vmlinux_new));
  const fs::path initrd_new = initrd.string() + ".new";
  auto modules = build_initrd(work / "unpacked/lib/modules" / report.version, busybox, initrd_new);
  if (!modules) {
    fs::remove(vmlinux_new, ec);
    return fail(modules.error());
  }
  fs::rename(vmlinux_new, vmlinux, ec);
  if (!ec) fs::rename(initrd_new, initrd, ec);
  if (ec) return fail(ErrorCode::kIo, "cannot write " + vmlinux.string() + ": " + ec.message());
  report.vmlinux = vmlinux;
  report.initrd = initrd;
  report.modules = *modules;
  return report;
}

}  // namespace nex::microvm
