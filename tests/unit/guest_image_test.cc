// The microVM guest's pieces, without a VM: the initramfs nex writes (a cpio archive a kernel
// unpacks; modules in dependency order) and the ELF kernel taken out of a bzImage.
#include "microvm/guest_image.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "core/subprocess.h"

namespace nex::microvm {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// name -> (mode, data) of every member of a cpio "newc" archive.
std::map<std::string, std::pair<unsigned, std::string>> unpack_newc(const std::string& a) {
  std::map<std::string, std::pair<unsigned, std::string>> out;
  size_t at = 0;
  auto field = [&](int i) { return std::stoul(a.substr(at + 6 + 8 * i, 8), nullptr, 16); };
  auto align = [](size_t n) { return (n + 3) & ~size_t{3}; };
  while (at + 110 <= a.size() && a.compare(at, 6, "070701") == 0) {
    const unsigned mode = static_cast<unsigned>(field(1));
    const size_t size = field(6), name_size = field(11);
    const std::string name = a.substr(at + 110, name_size - 1);
    const size_t data = align(at + 110 + name_size);
    if (name == "TRAILER!!!") break;
    out[name] = {mode, a.substr(data, size)};
    at = align(data + size);
  }
  return out;
}

class GuestImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nex-guest-image-" + std::to_string(getpid()));
    fs::create_directories(dir_ / "modules/kernel/drivers");
  }
  void TearDown() override { fs::remove_all(dir_); }
  void module(const std::string& name, const std::string& depends) {
    std::ofstream(dir_ / "modules/kernel/drivers" / (name + ".ko"), std::ios::binary)
        << "\x7f"
           "ELF...."
        << std::string("license=GPL\0depends=", 20) << depends << std::string("\0intree=Y\0", 10);
  }
  fs::path dir_;
};

TEST_F(GuestImageTest, TheInitramfsHoldsBusyboxTheModulesInDependencyOrderAndAnInit) {
  if (access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "no /bin/busybox (Debian: busybox-static)";
  module("virtio_ring", "");
  module("virtio", "virtio_ring");
  module("virtio_blk", "virtio,virtio_ring");
  module("virtio_net", "virtio_ring,virtio,net_failover");
  module("net_failover", "failover");
  module("failover", "");
  module("unrelated", "");  // not asked for: left out
  // virtio_mmio, qemu_fw_cfg, ... are missing here: built into this "kernel"
  // Asked for in the wrong order, and without the dependencies: they come first all the same.
  auto n = build_initrd(dir_ / "modules", "/bin/busybox", dir_ / "initrd.img",
                        {"virtio_net", "virtio_blk", "virtio_mmio", "qemu_fw_cfg"});
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 6u);
  EXPECT_EQ(fs::status(dir_ / "initrd.img").permissions() & fs::perms::others_read,
            fs::perms::others_read);
  auto files = unpack_newc(slurp(dir_ / "initrd.img"));
  ASSERT_TRUE(files.count("init"));
  EXPECT_EQ(files["init"].first & 0777, 0755u);
  EXPECT_EQ(files["bin/busybox"].second, slurp("/bin/busybox"));
  EXPECT_TRUE(files.count("lib/modules/virtio_blk.ko"));
  EXPECT_FALSE(files.count("lib/modules/unrelated.ko"));
  const std::string& init = files["init"].second;
  const size_t from = init.find("for m in "), to = init.find("; do", from);
  ASSERT_NE(to, std::string::npos) << init;
  const std::string list = init.substr(from + 8, to - from - 8) + " ";  // " a b c "
  auto pos = [&](const std::string& m) { return list.find(" " + m + " "); };
  for (const char* m :
       {"virtio_ring", "virtio", "virtio_blk", "virtio_net", "failover", "net_failover"})
    EXPECT_NE(pos(m), std::string::npos) << m << " is not loaded: " << list;
  EXPECT_LT(pos("virtio_ring"), pos("virtio")) << list;
  EXPECT_LT(pos("virtio"), pos("virtio_blk")) << list;
  EXPECT_LT(pos("failover"), pos("net_failover")) << list;
  EXPECT_LT(pos("net_failover"), pos("virtio_net")) << list;
  EXPECT_NE(init.find("mount -t ext4 -o ro /dev/vda /root"), std::string::npos) << init;
}

// A bzImage as the kernel build lays it out: setup sectors, the setup header ("HdrS", payload
// offset and length), and a compressed payload followed by its uncompressed size.
std::string fake_bzimage(const std::string& payload_and_size) {
  std::string image(5 * 512, '\0');  // setup_sects = 4, plus the boot sector
  image[0x1f1] = 4;
  image.replace(0x202, 4, "HdrS");
  const uint32_t offset = 16, length = static_cast<uint32_t>(payload_and_size.size());
  for (int i = 0; i < 4; ++i) {
    image[0x248 + i] = static_cast<char>(offset >> (8 * i));
    image[0x24c + i] = static_cast<char>(length >> (8 * i));
  }
  image += std::string(offset, 'p') + payload_and_size + "trailing";
  return image;
}

TEST_F(GuestImageTest, TheElfKernelComesOutOfABzImage) {
  // An "ELF kernel": the header fields is_elf_kernel reads, then filler.
  std::string elf = std::string(
                        "\x7f"
                        "ELF\x02\x01\x01",
                        7) +
                    std::string(9, '\0') + std::string("\x02\x00\x3e\x00", 4) +
                    std::string(4000, 'k');
  std::ofstream(dir_ / "kernel") << elf;
  ASSERT_TRUE(is_elf_kernel(dir_ / "kernel"));
  auto gz = Subprocess::spawn({.argv = {"gzip", "-kf", (dir_ / "kernel").string()}});
  ASSERT_TRUE(gz);
  ASSERT_EQ(gz->wait_for(std::chrono::seconds(10)).value_or(-1), 0);
  std::string payload = slurp(dir_ / "kernel.gz");
  for (int i = 0; i < 4; ++i) payload.push_back(static_cast<char>(elf.size() >> (8 * i)));
  std::ofstream(dir_ / "bzImage", std::ios::binary) << fake_bzimage(payload);

  ASSERT_TRUE(extract_vmlinux(dir_ / "bzImage", dir_ / "vmlinux"));
  EXPECT_EQ(slurp(dir_ / "vmlinux"), elf);

  std::ofstream(dir_ / "notakernel") << std::string(4096, 'x');
  auto bad = extract_vmlinux(dir_ / "notakernel", dir_ / "out");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("is not a Linux bzImage"), std::string::npos);
  std::ofstream(dir_ / "unknown", std::ios::binary) << fake_bzimage(std::string(64, 'z'));
  bad = extract_vmlinux(dir_ / "unknown", dir_ / "out");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("compression nex does not know"), std::string::npos);
  EXPECT_FALSE(is_elf_kernel(dir_ / "bzImage"));
}

}  // namespace
}  // namespace nex::microvm
