#include "microvm/microvm_driver.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "api/agent.h"
#include "core/file_io.h"
#include "core/subprocess.h"
#include "microvm/guest_image.h"
#include "sandbox/process_driver.h"
#include "sandbox/rootfs.h"

namespace nex::microvm {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Each VMM runs as a user of its own, from this range, so one compromised VMM cannot trace or
// signal another (or any process of the host's users).
constexpr uid_t kVmmUidBase = 0x4e580000;  // "NX"
constexpr uid_t kVmmUids = 65536;

bool cpu_has_hardware_virtualization() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream flags(line.substr(line.find(':') + 1));
    for (std::string f; flags >> f;) {
      if (f == "vmx" || f == "svm") return true;
    }
    return false;
  }
  return false;
}

// The host's TSC rate: a TCG guest's TSC counts at it, and a guest kernel without a timer to
// calibrate against (microvm has no PIT or HPET) needs to be told.
int64_t measure_tsc_khz() {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t c0 = __rdtsc();
  std::this_thread::sleep_for(20ms);
  const uint64_t c1 = __rdtsc();
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  return static_cast<int64_t>(static_cast<double>(c1 - c0) * 1e6 / static_cast<double>(ns));
}

// QEMU's option syntax: a comma inside a value is written twice.
std::string qemu_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    out.push_back(c);
    if (c == ',') out.push_back(',');
  }
  return out;
}

Status write_file(const fs::path& path, const std::string& text, mode_t mode, uid_t owner) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return fail(ErrorCode::kIo, "cannot write " + path.string() + ": " + strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fchown(fd, owner, static_cast<gid_t>(owner)) == 0 && ::fchmod(fd, mode) == 0;
  ::close(fd);
  if (!ok) return fail(ErrorCode::kIo, "cannot write " + path.string() + ": " + strerror(errno));
  return {};
}

class MicrovmSandbox : public sandbox::SubprocessSandbox {
 public:
  // The VMM is the sandbox: a signal to it ends the VM (the agent inside stops with it).
  MicrovmSandbox(std::string id, fs::path work_dir, std::string artifact_name, fs::path vm_dir,
                 Subprocess process, std::unique_ptr<GatewayServer::Vm> gateway)
      : SubprocessSandbox(std::move(id), std::move(work_dir), std::move(artifact_name),
                          std::move(process)),
        vm_dir_(std::move(vm_dir)),
        gateway_(std::move(gateway)) {}
  ~MicrovmSandbox() override { stop(5s); }

  void stop(std::chrono::milliseconds grace) override {
    SubprocessSandbox::stop(grace);
    {
      std::lock_guard lock(mu_);
      gateway_.reset();  // the VM's connections and its gateway socket
    }
    std::error_code ec;
    fs::remove_all(vm_dir_, ec);
    fs::remove(vm_dir_.string() + ".pid", ec);
  }
  std::string internal_nats_host() const override { return kGatewayAddress; }
  Status expose_host_port(int port) override {
    std::lock_guard lock(mu_);
    if (!gateway_)
      return fail(ErrorCode::kUnavailable,
                  "cannot expose port " + std::to_string(port) + ": the VM has stopped");
    gateway_->expose(port);
    return {};
  }

 private:
  fs::path vm_dir_;
  std::mutex mu_;
  std::unique_ptr<GatewayServer::Vm> gateway_;
};

std::atomic<uint32_t> next_vmm_uid{0};

}  // namespace

namespace {

// errno of opening `path` for reading as a VMM's user (0: it can), from a child process that
// becomes that user: the kernel's own answer, ACLs and all.
int open_errno_as_vmm_user(const fs::path& path) {
  const pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(kVmmUidBase) != 0 || ::setuid(kVmmUidBase) != 0)
      ::_exit(255);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ::_exit(fd >= 0 ? 0 : (errno & 0x7f));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) == 255) return EPERM;
  return WEXITSTATUS(status);
}

// The same from permission bits, for a caller that cannot become another user.
int open_errno_by_mode(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno;
  if (!(st.st_mode & S_IROTH)) return EACCES;
  for (fs::path dir = fs::absolute(path).parent_path(); !dir.empty(); dir = dir.parent_path()) {
    if (::stat(dir.c_str(), &st) != 0 || !(st.st_mode & S_IXOTH)) return EACCES;
    if (dir == dir.root_path()) break;
  }
  return 0;
}

}  // namespace

Status check_readable_by_vmms(const fs::path& path, const std::string& field) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return fail(ErrorCode::kNotFound,
                field + " " + path.string() + " not found (`nex node preflight --init` makes it)");
  const int err = ::geteuid() == 0 ? open_errno_as_vmm_user(path) : open_errno_by_mode(path);
  if (err == 0) return {};
  return fail(ErrorCode::kPermissionDenied,
              field + " " + path.string() + " cannot be read by the VMMs' users (" +
                  std::strerror(err) +
                  "): a VMM runs as a user of its own, so the file must be readable by all "
                  "(chmod o+r) and every folder above it open to all (chmod o+x); a folder of "
                  "`mktemp -d` or a home folder is not");
}

bool kvm_usable() {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
  ::close(fd);
  return ok;
}

AcceleratorChoice choose_accelerator() {
  if (!kvm_usable())
    return {"tcg", "/dev/kvm is missing or cannot be opened; QEMU emulates the CPU (TCG)"};
  if (!cpu_has_hardware_virtualization()) {
    const bool pvm = fs::exists("/sys/module/kvm_pvm");
    return {"tcg", std::string("/dev/kvm is ") +
                       (pvm ? "kvm_pvm, a software hypervisor" : "there") +
                       ", but this CPU has no hardware virtualization (no vmx or svm flag); a "
                       "standard guest kernel takes minutes to boot under it, so QEMU emulates "
                       "the CPU (TCG) instead; \"microvm_accelerator\": \"kvm\" forces KVM"};
  }
  return {"kvm", "KVM with hardware virtualization"};
}

Result<std::unique_ptr<MicrovmDriver>> MicrovmDriver::create(MicrovmOptions options) {
  if (geteuid() != 0)
    return fail(ErrorCode::kPermissionDenied,
                "the microvm sandbox needs root (it runs each VMM as a user of its own)");
  if (!find_program(options.qemu))
    return fail(ErrorCode::kNotFound, options.qemu + " not found (Debian: qemu-system-x86)");
  NEX_RETURN_IF_ERROR(check_readable_by_vmms(options.kernel, "kernel_filepath"));
  if (!is_elf_kernel(options.kernel))
    return fail(ErrorCode::kInvalidArgument,
                "kernel_filepath " + options.kernel.string() +
                    ": expected an uncompressed x86-64 ELF kernel (vmlinux); `nex node preflight "
                    "--init` makes one from Debian's kernel package");
  NEX_RETURN_IF_ERROR(check_readable_by_vmms(options.initrd, "initrd (beside kernel_filepath)"));
  NEX_RETURN_IF_ERROR(check_readable_by_vmms(options.rootfs, "rootfs_filepath"));
  if (!sandbox::is_ext4_image(options.rootfs))
    return fail(ErrorCode::kInvalidArgument, "rootfs_filepath " + options.rootfs.string() +
                                                 ": a microVM boots an ext4 image (`nex rootfs`)");
  if (access(options.gateway_binary.c_str(), X_OK) != 0)
    return fail(ErrorCode::kNotFound, options.gateway_binary.string() + " not found");
  if (options.vcpus < 1 || options.memory_mib < 64)
    return fail(ErrorCode::kInvalidArgument,
                "machine_template: a microVM needs vcpu_count >= 1 and memsize_mib >= 64");
  auto gateway = GatewayServer::start(options.gateway_max_connections, options.warn_workload);
  if (!gateway) return fail(gateway.error().wrap("microvm_gateway_max_connections"));

  std::unique_ptr<MicrovmDriver> d(new MicrovmDriver(std::move(options)));
  d->gateway_ = std::move(*gateway);
  const std::string& wanted = d->options_.accelerator;
  if (wanted == "auto") {
    auto choice = choose_accelerator();
    d->accelerator_ = choice.accelerator;
    d->accelerator_reason_ = choice.reason;
  } else if (wanted == "kvm") {
    if (!kvm_usable())
      return fail(ErrorCode::kNotFound,
                  "\"microvm_accelerator\": \"kvm\", but /dev/kvm is missing or cannot be opened");
    d->accelerator_ = "kvm";
    d->accelerator_reason_ = "\"microvm_accelerator\": \"kvm\"";
  } else if (wanted == "tcg") {
    d->accelerator_ = "tcg";
    d->accelerator_reason_ = "\"microvm_accelerator\": \"tcg\"";
  } else {
    return fail(
        ErrorCode::kInvalidArgument,
        "microvm_accelerator: expected \"auto\", \"kvm\" or \"tcg\", got \"" + wanted + "\"");
  }
  if (d->accelerator_ == "tcg") d->tsc_khz_ = measure_tsc_khz();
  std::error_code ec;
  fs::create_directories(d->pid_dir(), ec);
  if (ec)
    return fail(ErrorCode::kIo, "cannot create " + d->pid_dir().string() + ": " + ec.message());
  fs::permissions(d->pid_dir(), fs::perms(0755), ec);
  d->stop_leftovers();
  return d;
}

MicrovmDriver::~MicrovmDriver() {
  std::error_code ec;
  fs::remove(pid_dir(), ec);  // only when empty: a sandbox still running keeps its files
  fs::remove(pid_dir().parent_path(), ec);
}

std::chrono::milliseconds MicrovmDriver::boot_allowance() const {
  return accelerator_ == "kvm" ? 10s : 60s;
}

void MicrovmDriver::stop_leftovers() {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(pid_dir(), ec)) {
    if (e.path().extension() != ".pid") continue;
    const std::string id = e.path().stem().string();
    std::ifstream in(e.path());
    pid_t pid = 0;
    in >> pid;
    // Only a VMM of ours with this name: the pid may have been reused since.
    const std::string args = read_file("/proc/" + std::to_string(pid) + "/cmdline").value_or("");
    if (pid > 0 && args.find(std::string("nex-vm-") + id + '\0') != std::string::npos) {
      std::fprintf(stderr, "nex node: stopping VM %s (pid %d) left by a previous node\n",
                   id.c_str(), pid);
      ::kill(pid, SIGKILL);
    }
    fs::remove(e.path(), ec);
    fs::remove_all(pid_dir() / id, ec);
  }
}

namespace {

// The bootstrap: the agent's environment, and how it reaches the node through the gateway.
std::string bootstrap_text(const sandbox::SandboxSpec& spec) {
  std::string bootstrap;
  for (const auto& kv : spec.env) bootstrap += kv + "\n";
  bootstrap += std::string(api::kEnvNatsHost) + "=" + kGatewayAddress + "\n";
  bootstrap +=
      std::string(api::kEnvNatsPort) + "=" + std::to_string(spec.internal_nats_port) + "\n";
  bootstrap += std::string(api::kEnvArtifactPath) + "=/tmp/" + spec.artifact_name + "\n";
  bootstrap += std::string(api::kEnvArtifactFetch) + "=1\n";
  bootstrap += std::string(api::kEnvLoopbackGateway) + "=" + kGatewayAddress + ":" +
               std::to_string(kExposedPortsGateway) + "\n";
  return bootstrap;
}

}  // namespace

Result<std::unique_ptr<sandbox::Sandbox>> MicrovmDriver::start(const sandbox::SandboxSpec& spec) {
  std::error_code ec;
  fs::create_directories(spec.work_dir, ec);
  if (ec)
    return fail(ErrorCode::kIo, "cannot create " + spec.work_dir.string() + ": " + ec.message());
  fs::permissions(spec.work_dir, fs::perms::owner_all, ec);  // host side only: the VM fetches
  const fs::path vm_dir = pid_dir() / spec.workload_id;
  fs::create_directories(vm_dir, ec);
  fs::permissions(vm_dir, fs::perms(0755), ec);
  const uid_t uid = kVmmUidBase + (next_vmm_uid++ % kVmmUids);
  auto cleanup = [&] {
    fs::remove_all(spec.work_dir, ec);
    fs::remove_all(vm_dir, ec);
  };
  // The bootstrap: readable by this VMM's user alone, handed to the guest through fw_cfg.
  if (auto st = write_file(vm_dir / "bootstrap", bootstrap_text(spec), 0400, uid); !st) {
    cleanup();
    return fail(st.error());
  }
  const fs::path socket = vm_dir / "gateway.sock";
  const SpawnOptions spawn = vmm_spawn_options(qemu_argv(spec, vm_dir, socket), spec, uid);
  auto gateway_vm = gateway_->add_vm({.workload_id = spec.workload_id,
                                      .socket = socket,
                                      .vmm_uid = spawn.uid.value_or(0),
                                      .internal_nats_port = spec.internal_nats_port});
  if (!gateway_vm) {
    cleanup();
    return fail(gateway_vm.error());
  }
  auto process = Subprocess::spawn(spawn);
  if (!process) {
    cleanup();
    return fail(process.error().wrap("start " + options_.qemu));
  }
  if (auto st =
          write_file(vm_dir.string() + ".pid", std::to_string(process->pid()) + "\n", 0644, 0);
      !st) {
    process->terminate(0ms);
    cleanup();
    return fail(st.error());
  }
  return std::unique_ptr<sandbox::Sandbox>(
      std::make_unique<MicrovmSandbox>(spec.workload_id, spec.work_dir, spec.artifact_name, vm_dir,
                                       std::move(*process), std::move(*gateway_vm)));
}

std::vector<std::string> MicrovmDriver::qemu_argv(const sandbox::SandboxSpec& spec,
                                                  const fs::path& vm_dir,
                                                  const fs::path& socket) const {
  std::string append = "console=ttyS0 panic=-1 reboot=t quiet loglevel=4";
  std::vector<std::string> argv = {options_.qemu, "-name", "nex-vm-" + spec.workload_id};
  if (accelerator_ == "kvm") {
    argv.insert(argv.end(), {"-M", "microvm,accel=kvm", "-cpu", "host"});
  } else {
    // TCG's translation cache defaults to 1 GiB of the host's memory per VM; 64 MiB is plenty
    // for one agent and its workload.
    argv.insert(argv.end(), {"-M", "microvm", "-accel", "tcg,tb-size=64", "-cpu", "max"});
    append += " tsc_early_khz=" + std::to_string(tsc_khz_) + " tsc=reliable";
  }
  // Each connection to the gateway starts nex-vm-gateway, which hands it to gateway_ and exits.
  const std::string gateway = options_.gateway_binary.string() + " " + socket.string();
  const std::string net =
      "user,id=net0,restrict=on,net=10.0.2.0/24,host=10.0.2.2,guestfwd=tcp:" +
      std::string(kGatewayAddress) + ":" + std::to_string(spec.internal_nats_port) +
      "-cmd:" + qemu_escape(gateway + " nats") + ",guestfwd=tcp:" + kGatewayAddress + ":" +
      std::to_string(kExposedPortsGateway) + "-cmd:" + qemu_escape(gateway + " exposed");
  argv.insert(
      argv.end(),
      {"-m", std::to_string(options_.memory_mib), "-smp", std::to_string(options_.vcpus),
       "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
       "-kernel", options_.kernel.string(), "-initrd", options_.initrd.string(), "-append", append,
       "-drive",
       "id=root,file=" + qemu_escape(options_.rootfs.string()) + ",format=raw,if=none,readonly=on",
       "-device", "virtio-blk-device,drive=root", "-netdev", net, "-device",
       "virtio-net-device,netdev=net0", "-device", "virtio-rng-device",
       // The guest hands the pages it frees back to the host, so an idle VM holds about what
       // its agent uses rather than all its kernel ever touched.
       "-device", "virtio-balloon-device,free-page-reporting=on", "-fw_cfg",
       "name=opt/nex/bootstrap,file=" + qemu_escape((vm_dir / "bootstrap").string())});
  return argv;
}

SpawnOptions MicrovmDriver::vmm_spawn_options(std::vector<std::string> argv,
                                              const sandbox::SandboxSpec& spec, uid_t uid) const {
  SpawnOptions spawn{.argv = std::move(argv),
                     .env = {"PATH=/usr/local/bin:/usr/bin:/bin"},
                     .clear_env = true,
                     .stdout_path = spec.log_file.string(),
                     .stderr_path = spec.log_file.string(),
                     .die_with_parent = true,
                     .uid = uid,
                     .gid = static_cast<gid_t>(uid),
                     .null_stdin = true};
  if (accelerator_ == "kvm") {
    // /dev/kvm is for its group (Debian: kvm); a VMM with no access to it runs as root.
    struct stat st {};
    if (::stat("/dev/kvm", &st) == 0 && (st.st_mode & S_IRGRP) && (st.st_mode & S_IWGRP)) {
      spawn.gid = st.st_gid;
    } else {
      spawn.uid.reset();
      spawn.gid.reset();
    }
  }
  return spawn;
}

}  // namespace nex::microvm
