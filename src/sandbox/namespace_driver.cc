#include "sandbox/namespace_driver.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/loop.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#include "api/agent.h"
#include "core/file_io.h"
#include "core/subprocess.h"
#include "core/unique_fd.h"
#include "sandbox/loopback_forward.h"
#include "sandbox/process_driver.h"
#include "sandbox/rootfs.h"

namespace nex::sandbox {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string container_id(const std::string& instance, const std::string& id) {
  return "nex-" + instance + "-" + id;
}

std::string errno_text(int err) { return std::strerror(err); }

constexpr size_t kBootIdLength = 37;  // a UUID and a newline

// ---- The sandbox's first process, between clone() and execve(). It is a copy of the
// multithreaded node, so it only makes system calls on memory prepared before clone(). Each
// step below ends the process (exit code 127) with a report on the error pipe when it fails.

}  // namespace

// What of /proc the first process masks (paths under the stage's /proc that exist here).
struct ProcMasks {
  std::vector<std::string> files;      // covered by /dev/null
  std::vector<std::string> dirs;       // covered by an empty read-only tmpfs
  std::vector<std::string> read_only;  // bound read-only onto themselves
};

// Everything the first process uses, prepared before clone(): it must not allocate.
struct ChildPlan {
  int go_fd = -1;     // read: the internal NATS host and a newline, once the network is up
  int error_fd = -1;  // write: what failed (close-on-exec, so EOF means the agent started)
  int log_fd = -1;
  int null_fd = -1;
  int agent_fd = -1;    // the node's agent binary, executed from this descriptor
  int trigger_fd = -1;  // the node's trigger channel: the agent's descriptor 3, if any
  bool switch_off_ipv6 = false;
  std::string rootfs;
  std::string stage;  // where the new root is assembled (an empty directory)
  std::string hostname;
  char tmp_options[64] = {};
  char host_env[96] = {};  // "NEX_NODE_NATS_HOST=" + what the parent sends
  size_t host_env_prefix = 0;
  char boot_id[kBootIdLength + 1] = {};        // this sandbox's own, newline included
  std::string agent_name = kSandboxAgentPath;  // argv[0]
  std::vector<std::string> env;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const SeccompProgram* seccomp = nullptr;
  // Paths inside the stage, prepared in advance.
  std::string proc, tmp, dev, nex, dev_null, boot_id_file, boot_id_target;
  std::vector<std::string> dev_nodes;  // "/dev/null" ... under the stage
  ProcMasks masks;                     // under the stage's /proc
};

namespace {

void report(int fd, const char* step, int err) {
  char buf[160];
  size_t n = 0;
  for (const char* p = step; *p && n < 120; ++p) buf[n++] = *p;
  buf[n++] = '\n';
  char digits[12];
  int d = 0;
  do {
    digits[d++] = static_cast<char>('0' + err % 10);
    err /= 10;
  } while (err > 0 && d < 11);
  while (d > 0) buf[n++] = digits[--d];
  (void)!write(fd, buf, n);
}

#define CHILD_CHECK(expr, step)           \
  do {                                    \
    if ((expr) != 0) {                    \
      report(plan.error_fd, step, errno); \
      _exit(127);                         \
    }                                     \
  } while (0)

// The signal state of a fresh process, and none of the node's descriptors but the plan's: one
// may be an artifact another deploy is still writing, and holding it would make that
// workload's exec fail with ETXTBSY.
void reset_process(const ChildPlan& plan) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  int keep[] = {plan.go_fd,   plan.error_fd, plan.log_fd,
                plan.null_fd, plan.agent_fd, plan.trigger_fd};
  std::sort(std::begin(keep), std::end(keep));
  unsigned next = 3;
  for (int fd : keep) {
    if (fd < 0) continue;
    if (static_cast<unsigned>(fd) > next) syscall(SYS_close_range, next, fd - 1u, 0u);
    next = std::max(next, fd + 1u);
  }
  syscall(SYS_close_range, next, ~0u, 0u);
}

// Waits for the parent, which puts the process in its cgroup and network first and then sends
// the internal NATS host.
void wait_for_network(ChildPlan& plan) {
  size_t got = 0;
  char* host = plan.host_env + plan.host_env_prefix;
  const size_t room = sizeof plan.host_env - plan.host_env_prefix - 1;
  while (got < room && (got == 0 || host[got - 1] != '\n')) {
    const ssize_t n = read(plan.go_fd, host + got, room - got);
    if (n <= 0) _exit(126);  // the parent gave up
    got += static_cast<size_t>(n);
  }
  host[got - 1] = '\0';
  close(plan.go_fd);
}

// The firewall is IPv4's: IPv6 would reach the host over link-local addresses. Writing "all"
// takes it off the existing interfaces, "default" off any made later.
void switch_off_ipv6(const ChildPlan& plan) {
  if (!plan.switch_off_ipv6) return;
  for (const char* path : {"/proc/sys/net/ipv6/conf/all/disable_ipv6",
                           "/proc/sys/net/ipv6/conf/default/disable_ipv6"}) {
    const int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return;  // a kernel without IPv6
    CHILD_CHECK(fd < 0 || write(fd, "1", 1) != 1, "switch off IPv6");
    close(fd);
  }
}

void mount_root_and_dev(const ChildPlan& plan) {
  CHILD_CHECK(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mounts private");
  CHILD_CHECK(mount(plan.rootfs.c_str(), plan.stage.c_str(), nullptr, MS_BIND | MS_REC, nullptr),
              "bind the root filesystem");
  CHILD_CHECK(mount(nullptr, plan.stage.c_str(), nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr),
              "make the root filesystem read-only");
  CHILD_CHECK(mount("tmpfs", plan.dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755"),
              "mount /dev");
  static const dev_t kDevices[] = {makedev(1, 3), makedev(1, 5), makedev(1, 7), makedev(1, 8),
                                   makedev(1, 9)};  // null zero full random urandom
  for (size_t i = 0; i < plan.dev_nodes.size(); ++i) {
    CHILD_CHECK(mknod(plan.dev_nodes[i].c_str(), S_IFCHR | 0666, kDevices[i]), "create /dev nodes");
    CHILD_CHECK(chmod(plan.dev_nodes[i].c_str(), 0666), "create /dev nodes");
  }
}

constexpr unsigned long kReadOnlyRemount =
    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;

// The sandbox's own /proc, with what it would show of the host masked as container runtimes
// do: files covered by /dev/null, directories by an empty read-only tmpfs, and the kernel's
// settings read-only.
void mount_proc(const ChildPlan& plan) {
  CHILD_CHECK(mount("proc", plan.proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
              "mount /proc");
  for (const auto& file : plan.masks.files)
    CHILD_CHECK(mount(plan.dev_null.c_str(), file.c_str(), nullptr, MS_BIND, nullptr) != 0 &&
                    errno != ENOENT,
                "mask /proc's view of the host");
  for (const auto& dir : plan.masks.dirs)
    CHILD_CHECK(mount("tmpfs", dir.c_str(), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=4k") != 0 &&
                    errno != ENOENT,
                "mask /proc's view of the host");
  for (const auto& path : plan.masks.read_only) {
    if (mount(path.c_str(), path.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      CHILD_CHECK(errno != ENOENT, "make /proc's settings read-only");
      continue;
    }
    CHILD_CHECK(mount(nullptr, path.c_str(), nullptr, kReadOnlyRemount, nullptr),
                "make /proc's settings read-only");
  }
}

// The sandbox's boot id: a file on a small tmpfs that is mounted only until the file is bound
// over /proc/sys/kernel/random/boot_id, so it shows nowhere else.
void give_boot_id(const ChildPlan& plan) {
  CHILD_CHECK(mount("tmpfs", plan.tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    "size=4k,mode=755"),
              "mount the boot id's file system");
  const int fd = open(plan.boot_id_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  CHILD_CHECK(fd < 0 || write(fd, plan.boot_id, kBootIdLength) != ssize_t{kBootIdLength},
              "write the boot id");
  close(fd);
  CHILD_CHECK(
      mount(plan.boot_id_file.c_str(), plan.boot_id_target.c_str(), nullptr, MS_BIND, nullptr),
      "bind the boot id");
  CHILD_CHECK(mount(nullptr, plan.boot_id_target.c_str(), nullptr, kReadOnlyRemount, nullptr),
              "bind the boot id");
  CHILD_CHECK(umount2(plan.tmp.c_str(), MNT_DETACH), "unmount the boot id's file system");
}

// /tmp, and /nex: the workload's directory, an empty tmpfs the node writes the workload's file
// into from outside (nothing of the host's directories shows in the sandbox). The sandbox's
// user may read it, not write it.
void mount_tmp_and_nex(const ChildPlan& plan) {
  CHILD_CHECK(mount("tmpfs", plan.tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, plan.tmp_options),
              "mount /tmp");
  CHILD_CHECK(mount("tmpfs", plan.nex.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=755"),
              "mount /nex");
}

void enter_root(const ChildPlan& plan) {
  CHILD_CHECK(chdir(plan.stage.c_str()), "enter the new root");
  CHILD_CHECK(static_cast<int>(syscall(SYS_pivot_root, ".", ".")), "pivot_root");
  CHILD_CHECK(umount2(".", MNT_DETACH), "detach the host's root");
  CHILD_CHECK(chdir("/"), "enter the new root");
  CHILD_CHECK(sethostname(plan.hostname.c_str(), plan.hostname.size()), "set the host name");
}

// Loopback is where the workload's forwarded NATS (if any) listens.
void bring_up_loopback(const ChildPlan& plan) {
  const int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  CHILD_CHECK(sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) != 0, "read the loopback's flags");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  CHILD_CHECK(ioctl(sock, SIOCSIFFLAGS, &ifr), "bring up loopback");
  close(sock);
}

// Every privilege goes: capability bounding set, supplementary groups, root.
void drop_privileges(const ChildPlan& plan) {
  for (int cap = 0; cap <= 63; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;
  }
  CHILD_CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear ambient caps");
  // Raw system calls: the C library's wrappers would try to reach the node's other threads.
  CHILD_CHECK(static_cast<int>(syscall(SYS_setgroups, 0, nullptr)), "drop groups");
  CHILD_CHECK(static_cast<int>(syscall(SYS_setresgid, kSandboxUid, kSandboxUid, kSandboxUid)),
              "setresgid");
  CHILD_CHECK(static_cast<int>(syscall(SYS_setresuid, kSandboxUid, kSandboxUid, kSandboxUid)),
              "setresuid");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  CHILD_CHECK(static_cast<int>(syscall(SYS_capset, &header, data)), "clear capabilities");
  CHILD_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs");
}

// Nothing of the node's survives the exec but the error pipe and the agent's binary (both
// close-on-exec themselves) and the trigger channel, which becomes descriptor 3.
void hand_over_descriptors(ChildPlan& plan) {
  CHILD_CHECK(dup2(plan.null_fd, 0) < 0, "redirect stdin");
  CHILD_CHECK(dup2(plan.log_fd, 1) < 0 || dup2(plan.log_fd, 2) < 0, "redirect output");
  if (plan.trigger_fd >= 0) {
    for (int* fd : {&plan.error_fd, &plan.agent_fd}) {
      if (*fd != kPassedFd) continue;
      *fd = fcntl(*fd, F_DUPFD_CLOEXEC, kPassedFd + 1);
      if (*fd < 0) _exit(127);
    }
  }
  CHILD_CHECK(static_cast<int>(syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC)),
              "close descriptors");
  if (plan.trigger_fd >= 0) {
    CHILD_CHECK(plan.trigger_fd != kPassedFd && dup2(plan.trigger_fd, kPassedFd) < 0,
                "hand over the trigger channel");
    CHILD_CHECK(fcntl(kPassedFd, F_SETFD, 0), "hand over the trigger channel");
  }
}

// The agent runs from the node's own binary, opened before clone(): node and agent always
// match, and no host path of it shows in the sandbox.
[[noreturn]] void start_agent(const ChildPlan& plan) {
  if (int err = install_filter(*plan.seccomp); err != 0) {
    report(plan.error_fd, "install the seccomp filter", err);
    _exit(127);
  }
  syscall(SYS_execveat, plan.agent_fd, "", plan.argv.data(), plan.envp.data(), AT_EMPTY_PATH);
  report(plan.error_fd, "start the agent", errno);
  _exit(127);
}

int child_main(void* arg) {
  ChildPlan& plan = *static_cast<ChildPlan*>(arg);
  reset_process(plan);
  wait_for_network(plan);
  CHILD_CHECK(unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace");
  switch_off_ipv6(plan);
  mount_root_and_dev(plan);
  mount_proc(plan);
  give_boot_id(plan);
  mount_tmp_and_nex(plan);
  enter_root(plan);
  bring_up_loopback(plan);
  drop_privileges(plan);
  hand_over_descriptors(plan);
  start_agent(plan);
}

// ---- The sandbox as the node sees it.

class NamespaceSandbox : public Sandbox {
 public:
  NamespaceSandbox(const NamespaceDriver& driver, std::string id, std::string artifact_name)
      : driver_(driver), id_(std::move(id)), artifact_name_(std::move(artifact_name)) {}
  ~NamespaceSandbox() override { stop(std::chrono::seconds(5)); }

  const std::string& id() const override { return id_; }
  pid_t pid() const override { return pid_; }
  bool running() override { return pid_ > 0 && !wait(std::chrono::milliseconds(0)); }
  Status signal(int signo) override {
    if (pid_ <= 0 || status_) return fail(ErrorCode::kNotFound, "the sandbox has ended");
    if (::kill(pid_, signo) != 0) return fail(ErrorCode::kIo, "kill: " + errno_text(errno));
    return {};
  }
  std::optional<int> wait(std::chrono::milliseconds timeout) override {
    std::lock_guard lock(wait_mu_);
    if (status_ || pid_ <= 0) return status_;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int st = 0;
      const pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = st;
        return status_;
      }
      if (r < 0 && errno != EINTR) {
        status_ = 0;
        return status_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  void stop(std::chrono::milliseconds grace) override {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    if (pid_ > 0 && !wait(std::chrono::milliseconds(0))) {
      ::kill(pid_, SIGTERM);  // the agent ends its workload; pid 1 going ends everything else
      if (!wait(grace)) {
        ::kill(pid_, SIGKILL);
        wait(std::chrono::seconds(10));
      }
    }
    forwarders_.clear();
    release();
  }
  Result<SandboxStats> stats() override { return SandboxStats{process_tree_rss_bytes(pid_)}; }
  std::string internal_nats_host() const override { return gateway_; }
  Status expose_host_port(int port) override {
    const int fd = open(netns_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(ErrorCode::kIo, "open " + netns_.string() + ": " + errno_text(errno));
    auto f = LoopbackForwarder::start(fd, port, "127.0.0.1", port);
    close(fd);
    if (!f) return fail(f.error());
    std::lock_guard lock(stop_mu_);
    forwarders_.push_back(std::move(*f));
    return {};
  }
  // The sandbox's /nex as the node reaches it: through a descriptor of the directory, opened
  // while the agent was known to be this sandbox's pid 1. It stays open as long as this
  // object, so the number never names another directory.
  std::filesystem::path artifact_path() const override {
    return "/proc/self/fd/" + std::to_string(artifact_dir_.get()) + "/" + artifact_name_;
  }

  // Keeps the network namespace by a bind mount, so it can be taken down (and its address
  // released) even after the sandbox's processes are gone, by this node or its successor; then
  // gives it its CNI network and the firewall's rules for its link.
  Status attach_network() {
    const auto& o = driver_.options();
    netns_ = driver_.instance_dir() / "netns" / id_;
    { std::ofstream touch(netns_); }
    const std::string ns_source = "/proc/" + std::to_string(pid_) + "/ns/net";
    if (mount(ns_source.c_str(), netns_.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return fail(ErrorCode::kIo, "bind " + ns_source + ": " + errno_text(errno));
    auto attachment = cni_add(o.cni, driver_.network(), container_id(o.instance, id_), netns_);
    if (!attachment) return fail(attachment.error().wrap("sandbox network"));
    attached_ = true;
    cni_result_ = attachment->result;
    gateway_ = attachment->gateway;
    { std::ofstream(netns_.string() + ".json") << cni_result_.dump(); }
    if (!driver_.firewall()) return {};
    if (attachment->host_interfaces.empty())
      return fail(ErrorCode::kInvalidArgument,
                  "CNI network " + o.cni.network_name +
                      " names no host interface for the sandbox firewall to filter (a ptp "
                      "network does; \"sandbox_network\": \"open\" runs without the firewall)");
    for (const auto& name : attachment->host_interfaces) {
      SandboxLink link{name, gateway_, internal_port_};
      if (auto st = driver_.firewall()->add(link); !st) return st;
      links_.push_back(std::move(link));
    }
    return {};
  }

  // Lets the first process go on (it waits for its network) and waits for it to start the
  // agent; then opens the sandbox's /nex for the node.
  Status await_agent(UniqueFd go, UniqueFd errors) {
    const std::string go_message = gateway_ + "\n";
    if (write(go.get(), go_message.data(), go_message.size()) !=
        static_cast<ssize_t>(go_message.size()))
      return fail(ErrorCode::kIo, "cannot release the sandbox's first process");
    go.reset();
    std::string failure;
    char buf[256];
    for (ssize_t n; (n = read(errors.get(), buf, sizeof buf)) > 0;)
      failure.append(buf, static_cast<size_t>(n));
    if (!failure.empty()) {
      const size_t nl = failure.find('\n');
      const int code = std::atoi(failure.c_str() + nl + 1);
      return fail(ErrorCode::kInternal,
                  "namespace sandbox: " + failure.substr(0, nl) + " failed: " + errno_text(code));
    }
    // The agent runs (its exec closed the pipe) and is not reaped: pid_ is still its own.
    const std::string nex = "/proc/" + std::to_string(pid_) + "/root" + kSandboxWorkDir;
    artifact_dir_.reset(open(nex.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!artifact_dir_.valid())
      return fail(ErrorCode::kIo, "open " + nex + ": " + errno_text(errno));
    return {};
  }

  // Everything the sandbox holds on the host, taken back (also on a failed start).
  void release() {
    const auto& o = driver_.options();
    for (const auto& link : links_) {
      if (auto st = driver_.firewall()->remove(link); !st)
        std::fprintf(stderr, "nex node: sandbox %s: %s\n", id_.c_str(), st.error().message.c_str());
    }
    links_.clear();
    if (attached_) {
      if (auto st =
              cni_del(o.cni, driver_.network(), container_id(o.instance, id_), netns_, cni_result_);
          !st)
        std::fprintf(stderr, "nex node: sandbox %s: %s\n", id_.c_str(), st.error().message.c_str());
      attached_ = false;
    }
    std::error_code ec;
    if (!netns_.empty()) {
      umount2(netns_.c_str(), MNT_DETACH);
      fs::remove(netns_, ec);
      fs::remove(fs::path(netns_.string() + ".json"), ec);
    }
    cgroup_.remove();
    if (!stage_.empty()) fs::remove(stage_, ec);
  }

  const NamespaceDriver& driver_;
  std::string id_;
  std::string artifact_name_;
  fs::path stage_;
  fs::path netns_;
  Cgroup cgroup_;
  bool attached_ = false;
  json cni_result_;
  std::string gateway_;
  int internal_port_ = 0;
  std::vector<SandboxLink> links_;  // the firewall's rules for this sandbox, by link
  pid_t pid_ = -1;
  std::mutex wait_mu_, stop_mu_;
  std::optional<int> status_;
  bool stopped_ = false;
  std::vector<std::unique_ptr<LoopbackForwarder>> forwarders_;
  UniqueFd artifact_dir_;
};

// Attaches a read-only loop device to `image` and mounts it (ext4) at `dir`. The device goes
// away by itself when the file system is unmounted.
Status mount_image(const fs::path& image, const fs::path& dir) {
  const int file = open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (file < 0) return fail(ErrorCode::kIo, "open " + image.string() + ": " + errno_text(errno));
  const int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (control < 0) {
    close(file);
    return fail(ErrorCode::kUnavailable, "open /dev/loop-control: " + errno_text(errno) +
                                             " (an ext4 rootfs needs loop devices; a directory "
                                             "works without)");
  }
  Status result = fail(ErrorCode::kUnavailable, "no free loop device");
  for (int attempt = 0; attempt < 8; ++attempt) {
    const int n = ioctl(control, LOOP_CTL_GET_FREE);
    if (n < 0) break;
    const std::string dev = "/dev/loop" + std::to_string(n);
    const int loop = open(dev.c_str(), O_RDONLY | O_CLOEXEC);
    if (loop < 0) continue;
    loop_config config{};
    config.fd = static_cast<uint32_t>(file);
    config.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
    if (ioctl(loop, LOOP_CONFIGURE, &config) != 0) {
      close(loop);
      if (errno == EBUSY) continue;  // another process took it first
      result = fail(ErrorCode::kIo,
                    "attach " + image.string() + " to " + dev + ": " + errno_text(errno));
      break;
    }
    if (mount(dev.c_str(), dir.c_str(), "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV, "") != 0) {
      result = fail(ErrorCode::kInvalidArgument,
                    "mount " + image.string() + " as ext4: " + errno_text(errno));
      ioctl(loop, LOOP_CLR_FD);
    } else {
      result = {};
    }
    close(loop);
    break;
  }
  close(control);
  close(file);
  return result;
}

}  // namespace

Result<std::unique_ptr<NamespaceDriver>> NamespaceDriver::create(NamespaceOptions options) {
  if (geteuid() != 0)
    return fail(ErrorCode::kPermissionDenied,
                "the namespace sandbox needs root (run the node as root, or set \"no_sandbox\": "
                "true for the process driver)");
  std::unique_ptr<NamespaceDriver> d(new NamespaceDriver(std::move(options)));
  const auto& o = d->options_;
  if (auto v = Cgroup::host_version(); !v) return fail(v.error());
  auto network = load_cni_network(o.cni);
  if (!network) return fail(network.error());
  d->network_ = std::move(*network);
  for (const auto& type : d->network_.plugin_types()) {
    if (auto p = find_cni_plugin(o.cni, type); !p) return fail(p.error());
  }
  auto seccomp = build_workload_filter();
  if (!seccomp) return fail(seccomp.error());
  d->seccomp_ = std::move(*seccomp);

  d->remove_stale();
  if (!o.open_network) {
    auto firewall = SandboxFirewall::install(o.instance);
    if (!firewall)
      return fail(
          firewall.error().wrap("sandbox firewall (\"sandbox_network\": \"open\" runs "
                                "without one)"));
    d->firewall_ = std::move(*firewall);
  }
  std::error_code ec;
  for (const char* sub : {"netns", "roots"}) fs::create_directories(d->instance_dir() / sub, ec);
  if (ec)
    return fail(ErrorCode::kIo,
                "cannot create " + d->instance_dir().string() + ": " + ec.message());

  if (fs::is_directory(o.rootfs)) {
    d->root_dir_ = o.rootfs;
  } else if (fs::is_regular_file(o.rootfs)) {
    d->root_dir_ = d->instance_dir() / "rootfs";
    fs::create_directories(d->root_dir_, ec);
    if (auto st = mount_image(o.rootfs, d->root_dir_); !st)
      return fail(st.error().wrap("rootfs_filepath"));
  } else {
    return fail(ErrorCode::kNotFound,
                "rootfs_filepath: " + o.rootfs.string() +
                    " is neither an ext4 image nor a directory (`nex rootfs -o " +
                    o.rootfs.string() + "` builds one)");
  }
  // The agent comes from the node (so the two always match); its libraries from the rootfs.
  auto lacking = missing_agent_file(d->root_dir_, o.agent_binary);
  if (!lacking) return fail(lacking.error());
  if (*lacking)
    return fail(ErrorCode::kNotFound,
                "rootfs_filepath: " + o.rootfs.string() + " lacks " + (*lacking)->string() +
                    ", which the agent needs (rebuild it with `nex rootfs -o " + o.rootfs.string() +
                    "`)");
  return d;
}

NamespaceDriver::~NamespaceDriver() {
  // Every sandbox has been stopped by now: take away what is left of this node's.
  remove_stale();
  std::error_code ec;
  for (const char* sub : {"netns", "roots"}) fs::remove(instance_dir() / sub, ec);
  fs::remove(instance_dir(), ec);  // only ever removes empty directories
}

void NamespaceDriver::remove_stale() {
  std::error_code ec;
  const fs::path netns_dir = instance_dir() / "netns";
  for (const auto& entry : fs::directory_iterator(netns_dir, ec)) {
    const fs::path& file = entry.path();
    if (file.extension() == ".json") continue;
    // The ADD result is saved once ADD returned; a node killed during ADD left none, and the
    // plugins release by container id without it.
    json result;
    if (auto saved = read_file(file.string() + ".json"))
      result = json::parse(*saved, nullptr, false);
    if (result.is_discarded()) result = nullptr;
    (void)cni_del(options_.cni, network_, container_id(options_.instance, file.filename()), file,
                  result);
    umount2(file.c_str(), MNT_DETACH);
    fs::remove(file, ec);
    fs::remove(file.string() + ".json", ec);
  }
  Cgroup::remove_stale(options_.instance);
  for (const auto& entry : fs::directory_iterator(instance_dir() / "roots", ec))
    fs::remove(entry.path(), ec);
  const fs::path image_dir = instance_dir() / "rootfs";
  if (fs::exists(image_dir, ec)) {
    umount2(image_dir.c_str(), MNT_DETACH);
    fs::remove(image_dir, ec);
  }
  // Without iptables there are no chains to remove (and create() says what is missing).
  (void)SandboxFirewall::uninstall(options_.instance);
}

// The descriptors the first process starts with; the parent closes its copies after clone().
struct ChildFds {
  UniqueFd go_read, go_write, errors_read, errors_write, log, null, agent;
};

namespace {

// What /proc shows of the host: runc's maskedPaths and readonlyPaths, with the kernel's command
// line and configuration, its symbols and modules besides.
constexpr const char* kMaskedProcFiles[] = {
    "bootconfig", "cmdline", "config.gz",     "interrupts",  "kallsyms",   "kcore",      "keys",
    "key-users",  "modules", "latency_stats", "sched_debug", "timer_list", "timer_stats"};
constexpr const char* kMaskedProcDirs[] = {"acpi", "asound", "scsi"};
constexpr const char* kReadOnlyProc[] = {"bus", "fs", "irq", "sys", "sysrq-trigger"};

// The paths under `proc` (the stage's) of what this kernel's /proc has of `names`.
template <size_t N>
std::vector<std::string> existing_in_proc(const std::string& proc, const char* const (&names)[N]) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const char* name : names)
    if (fs::exists(fs::path("/proc") / name, ec)) out.push_back(proc + "/" + name);
  return out;
}

// A random version-4 UUID and a newline, as the kernel's boot_id reads.
void random_boot_id(char (&out)[kBootIdLength + 1]) {
  unsigned char b[16];
  (void)!getrandom(b, sizeof b, 0);  // 16 bytes: never short once the pool is ready
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x\n", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
}

Status open_child_fds(const SandboxSpec& spec, ChildFds& fds) {
  int go[2], err[2];
  if (pipe2(go, O_CLOEXEC) != 0) return fail(ErrorCode::kIo, "pipe: " + errno_text(errno));
  fds.go_read.reset(go[0]);
  fds.go_write.reset(go[1]);
  if (pipe2(err, O_CLOEXEC) != 0) return fail(ErrorCode::kIo, "pipe: " + errno_text(errno));
  fds.errors_read.reset(err[0]);
  fds.errors_write.reset(err[1]);
  fds.log.reset(open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!fds.log.valid()) return std::unexpected(file_error("open", spec.log_file, errno));
  fds.null.reset(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!fds.null.valid()) return std::unexpected(file_error("open", "/dev/null", errno));
  fds.agent.reset(open(spec.agent_binary.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fds.agent.valid())
    return fail(ErrorCode::kIo, "open " + spec.agent_binary.string() + ": " + errno_text(errno));
  return {};
}

// The agent's environment inside the sandbox (NEX_NODE_NATS_HOST follows once the network is up).
std::vector<std::string> agent_environment(const SandboxSpec& spec) {
  std::vector<std::string> env = spec.env;
  env.push_back("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
  env.push_back("HOME=/tmp");
  env.push_back(std::string(api::kEnvNatsPort) + "=" + std::to_string(spec.internal_nats_port));
  env.push_back(std::string(api::kEnvArtifactPath) + "=" + kSandboxWorkDir + "/" +
                spec.artifact_name);
  if (spec.trigger_channel_fd >= 0)
    env.push_back(std::string(api::kEnvTriggerFd) + "=" + std::to_string(kPassedFd));
  return env;
}

}  // namespace

void NamespaceDriver::plan_child(const SandboxSpec& spec, const fs::path& stage_dir,
                                 const ChildFds& fds, ChildPlan& plan) const {
  plan.go_fd = fds.go_read.get();
  plan.error_fd = fds.errors_write.get();
  plan.log_fd = fds.log.get();
  plan.null_fd = fds.null.get();
  plan.agent_fd = fds.agent.get();
  plan.trigger_fd = spec.trigger_channel_fd;
  plan.switch_off_ipv6 = firewall_.has_value();
  plan.rootfs = root_dir_.string();
  plan.stage = stage_dir.string();
  plan.hostname = "nex-" + spec.workload_id;
  std::snprintf(plan.tmp_options, sizeof plan.tmp_options, "size=%lld,mode=1777",
                static_cast<long long>(options_.tmp_bytes));
  plan.host_env_prefix = static_cast<size_t>(
      std::snprintf(plan.host_env, sizeof plan.host_env, "%s=", api::kEnvNatsHost));
  random_boot_id(plan.boot_id);
  const std::string& stage = plan.stage;
  plan.proc = stage + "/proc";
  plan.tmp = stage + "/tmp";
  plan.dev = stage + "/dev";
  plan.nex = stage + kSandboxWorkDir;
  plan.dev_null = plan.dev + "/null";
  plan.boot_id_file = plan.tmp + "/boot_id";
  plan.boot_id_target = plan.proc + "/sys/kernel/random/boot_id";
  for (const char* d : {"null", "zero", "full", "random", "urandom"})
    plan.dev_nodes.push_back(plan.dev + "/" + d);
  plan.masks = {existing_in_proc(plan.proc, kMaskedProcFiles),
                existing_in_proc(plan.proc, kMaskedProcDirs),
                existing_in_proc(plan.proc, kReadOnlyProc)};
  plan.env = agent_environment(spec);
  plan.argv = {plan.agent_name.data(), nullptr};
  for (auto& e : plan.env) plan.envp.push_back(e.data());
  plan.envp.push_back(plan.host_env);
  plan.envp.push_back(nullptr);
  plan.seccomp = &seccomp_;
}

Result<std::unique_ptr<Sandbox>> NamespaceDriver::start(const SandboxSpec& spec) {
  auto sandbox = std::make_unique<NamespaceSandbox>(*this, spec.workload_id, spec.artifact_name);
  NamespaceSandbox& s = *sandbox;
  s.internal_port_ = spec.internal_nats_port;
  s.stage_ = instance_dir() / "roots" / spec.workload_id;
  std::error_code ec;
  fs::create_directories(s.stage_, ec);
  auto group = Cgroup::create(options_.instance, spec.workload_id, options_.limits);
  if (!group) {
    s.release();
    return fail(group.error());
  }
  s.cgroup_ = std::move(*group);
  ChildFds fds;
  if (auto st = open_child_fds(spec, fds); !st) {
    s.release();
    return fail(st.error());
  }
  ChildPlan plan;
  plan_child(spec, s.stage_, fds, plan);

  constexpr size_t kStack = 256 * 1024;
  void* stack =
      mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    s.release();
    return fail(ErrorCode::kIo, "mmap: " + errno_text(errno));
  }
  const int flags =
      CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
  s.pid_ = clone(child_main, static_cast<char*>(stack) + kStack, flags, &plan);
  const int clone_errno = errno;
  munmap(stack, kStack);  // the child runs on its own copy
  // The child has its own copies of these; the node keeps only its ends of the two pipes.
  for (UniqueFd* fd : {&fds.go_read, &fds.errors_write, &fds.log, &fds.null, &fds.agent})
    fd->reset();
  if (s.pid_ < 0) {
    s.release();
    return fail(ErrorCode::kIo, "clone: " + errno_text(clone_errno));
  }
  Status started = s.cgroup_.add(s.pid_);
  if (started) started = s.attach_network();
  if (started) started = s.await_agent(std::move(fds.go_write), std::move(fds.errors_read));
  if (!started) {
    ::kill(s.pid_, SIGKILL);
    s.stop(std::chrono::milliseconds(0));
    return fail(started.error());
  }
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

}  // namespace nex::sandbox
