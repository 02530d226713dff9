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
#include "core/subprocess.h"
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

// ---- The sandbox's first process, between clone() and execve(). It is a copy of the
// multithreaded node, so it only makes system calls on memory prepared before clone().

struct ChildPlan {
  int go_fd = -1;     // read: the internal NATS host and a newline, once the network is up
  int error_fd = -1;  // write: what failed (close-on-exec, so EOF means the agent started)
  int log_fd = -1;
  int null_fd = -1;
  int trigger_fd = -1;  // the node's trigger channel: the agent's descriptor 3, if any
  const char* rootfs = nullptr;
  const char* stage = nullptr;  // where the new root is assembled (an empty directory)
  const char* work_dir = nullptr;
  const char* agent = nullptr;
  const char* hostname = nullptr;
  char tmp_options[64] = {};
  char host_env[96] = {};  // "NEX_NODE_NATS_HOST=" + what the parent sends
  size_t host_env_prefix = 0;
  std::vector<char*> argv;
  std::vector<char*> envp;
  const SeccompProgram* seccomp = nullptr;
  // Paths inside the stage, prepared in advance.
  std::string proc, tmp, dev, nex, agent_target;
  std::vector<std::string> dev_nodes;  // "/dev/null" ... under the stage
};

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

#define CHILD_CHECK(expr, step)      \
  do {                               \
    if ((expr) != 0) {               \
      report(plan.error_fd, step, errno); \
      _exit(127);                    \
    }                                \
  } while (0)

int child_main(void* arg) {
  ChildPlan& plan = *static_cast<ChildPlan*>(arg);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Start the agent with the signal state of a fresh process, not the node's.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  // Drop the node's descriptors at once: one may be an artifact another deploy is still
  // writing, and holding it would make that workload's exec fail with ETXTBSY.
  int keep[5] = {plan.go_fd, plan.error_fd, plan.log_fd, plan.null_fd, plan.trigger_fd};
  std::sort(keep, keep + 5);
  unsigned next = 3;
  for (int fd : keep) {
    if (fd < 0) continue;
    if (static_cast<unsigned>(fd) > next) syscall(SYS_close_range, next, fd - 1u, 0u);
    next = std::max(next, fd + 1u);
  }
  syscall(SYS_close_range, next, ~0u, 0u);
  // Wait for the parent: it puts us in our cgroup and network first.
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

  CHILD_CHECK(unshare(CLONE_NEWCGROUP), "unshare the cgroup namespace");
  CHILD_CHECK(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), "make mounts private");
  CHILD_CHECK(mount(plan.rootfs, plan.stage, nullptr, MS_BIND | MS_REC, nullptr),
              "bind the root filesystem");
  CHILD_CHECK(mount(nullptr, plan.stage, nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr),
              "make the root filesystem read-only");
  CHILD_CHECK(mount("proc", plan.proc.c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr),
              "mount /proc");
  CHILD_CHECK(mount("tmpfs", plan.tmp.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, plan.tmp_options),
              "mount /tmp");
  CHILD_CHECK(mount("tmpfs", plan.dev.c_str(), "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755"),
              "mount /dev");
  static const dev_t kDevices[] = {makedev(1, 3), makedev(1, 5), makedev(1, 7), makedev(1, 8),
                                   makedev(1, 9)};  // null zero full random urandom
  for (size_t i = 0; i < plan.dev_nodes.size(); ++i) {
    CHILD_CHECK(mknod(plan.dev_nodes[i].c_str(), S_IFCHR | 0666, kDevices[i]), "create /dev nodes");
    CHILD_CHECK(chmod(plan.dev_nodes[i].c_str(), 0666), "create /dev nodes");
  }
  CHILD_CHECK(mount(plan.work_dir, plan.nex.c_str(), nullptr, MS_BIND, nullptr),
              "bind the work directory to /nex");
  CHILD_CHECK(mount(nullptr, plan.nex.c_str(), nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr),
              "make /nex read-only");
  CHILD_CHECK(mount(plan.agent, plan.agent_target.c_str(), nullptr, MS_BIND, nullptr),
              "bind the agent to /sbin/nex-agent (the root filesystem needs that file)");
  CHILD_CHECK(mount(nullptr, plan.agent_target.c_str(), nullptr,
                    MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr),
              "make the agent read-only");
  CHILD_CHECK(chdir(plan.stage), "enter the new root");
  CHILD_CHECK(static_cast<int>(syscall(SYS_pivot_root, ".", ".")), "pivot_root");
  CHILD_CHECK(umount2(".", MNT_DETACH), "detach the host's root");
  CHILD_CHECK(chdir("/"), "enter the new root");
  CHILD_CHECK(sethostname(plan.hostname, strlen(plan.hostname)), "set the host name");
  // Bring up loopback: the workload's forwarded NATS (if any) listens there.
  const int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  CHILD_CHECK(sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) != 0, "read the loopback's flags");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  CHILD_CHECK(ioctl(sock, SIOCSIFFLAGS, &ifr), "bring up loopback");
  close(sock);

  // Give up every privilege: capability bounding set, supplementary groups, root.
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

  CHILD_CHECK(dup2(plan.null_fd, 0) < 0, "redirect stdin");
  CHILD_CHECK(dup2(plan.log_fd, 1) < 0 || dup2(plan.log_fd, 2) < 0, "redirect output");
  // Nothing of the node's survives the exec but the error pipe (close-on-exec itself) and the
  // trigger channel, which becomes descriptor 3.
  if (plan.trigger_fd >= 0 && plan.error_fd == kPassedFd) {
    plan.error_fd = fcntl(plan.error_fd, F_DUPFD_CLOEXEC, kPassedFd + 1);
    if (plan.error_fd < 0) _exit(127);
  }
  CHILD_CHECK(static_cast<int>(syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC)),
              "close descriptors");
  if (plan.trigger_fd >= 0) {
    CHILD_CHECK(plan.trigger_fd != kPassedFd && dup2(plan.trigger_fd, kPassedFd) < 0,
                "hand over the trigger channel");
    CHILD_CHECK(fcntl(kPassedFd, F_SETFD, 0), "hand over the trigger channel");
  }
  if (int err = install_filter(*plan.seccomp); err != 0) {
    report(plan.error_fd, "install the seccomp filter", err);
    _exit(127);
  }
  execve(plan.argv[0], plan.argv.data(), plan.envp.data());
  report(plan.error_fd, "start /sbin/nex-agent", errno);
  _exit(127);
}

// ---- The sandbox as the node sees it.

class NamespaceSandbox : public Sandbox {
 public:
  NamespaceSandbox(const NamespaceDriver& driver, std::string id, fs::path work_dir)
      : driver_(driver), id_(std::move(id)), work_dir_(std::move(work_dir)) {}
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

  // Everything the sandbox holds on the host, taken back (also on a failed start).
  void release() {
    const auto& o = driver_.options();
    if (attached_) {
      if (auto st = cni_del(o.cni, driver_.network(), container_id(o.instance, id_), netns_,
                            cni_result_);
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
    if (!work_dir_.empty()) fs::remove_all(work_dir_, ec);
  }

  const NamespaceDriver& driver_;
  std::string id_;
  fs::path work_dir_;
  fs::path stage_;
  fs::path netns_;
  Cgroup cgroup_;
  bool attached_ = false;
  json cni_result_;
  std::string gateway_;
  pid_t pid_ = -1;
  std::mutex wait_mu_, stop_mu_;
  std::optional<int> status_;
  bool stopped_ = false;
  std::vector<std::unique_ptr<LoopbackForwarder>> forwarders_;
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
      result = fail(ErrorCode::kIo, "attach " + image.string() + " to " + dev + ": " +
                                        errno_text(errno));
      break;
    }
    if (mount(dev.c_str(), dir.c_str(), "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV, "") != 0) {
      result = fail(ErrorCode::kInvalidArgument, "mount " + image.string() +
                                                     " as ext4: " + errno_text(errno));
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
  std::error_code ec;
  for (const char* sub : {"netns", "roots"}) fs::create_directories(d->instance_dir() / sub, ec);
  if (ec) return fail(ErrorCode::kIo, "cannot create " + d->instance_dir().string() + ": " + ec.message());

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
                    ", which the agent needs (rebuild it with `nex rootfs -o " +
                    o.rootfs.string() + "`)");
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
    const fs::path file = entry.path();
    if (file.extension() == ".json") continue;
    // The ADD result is saved once ADD returned; a node killed during ADD left none, and the
    // plugins release by container id without it.
    json result;
    std::ifstream in(file.string() + ".json");
    if (in) result = json::parse(in, nullptr, false);
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
}

Result<std::unique_ptr<Sandbox>> NamespaceDriver::start(const SandboxSpec& spec) {
  auto sandbox = std::make_unique<NamespaceSandbox>(*this, spec.workload_id, spec.work_dir);
  NamespaceSandbox& s = *sandbox;
  std::error_code ec;
  fs::create_directories(spec.work_dir, ec);
  if (ec)
    return fail(ErrorCode::kIo, "cannot create " + spec.work_dir.string() + ": " + ec.message());
  // The sandbox's user reads (and runs) what the node puts here; the host's other users don't.
  (void)chown(spec.work_dir.c_str(), kSandboxUid, kSandboxUid);
  fs::permissions(spec.work_dir, fs::perms::owner_all, ec);
  s.stage_ = instance_dir() / "roots" / spec.workload_id;
  fs::create_directories(s.stage_, ec);
  auto group = Cgroup::create(options_.instance, spec.workload_id, options_.limits);
  if (!group) {
    s.release();
    return fail(group.error());
  }
  s.cgroup_ = std::move(*group);

  ChildPlan plan;
  int go[2], err[2];
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    s.release();
    return fail(ErrorCode::kIo, "pipe: " + errno_text(errno));
  }
  plan.go_fd = go[0];
  plan.error_fd = err[1];
  plan.log_fd = open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  plan.null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  const std::string rootfs = root_dir_.string(), stage = s.stage_.string(),
                    work = spec.work_dir.string(), agent = spec.agent_binary.string();
  const std::string hostname = "nex-" + spec.workload_id;
  plan.rootfs = rootfs.c_str();
  plan.stage = stage.c_str();
  plan.work_dir = work.c_str();
  plan.agent = agent.c_str();
  plan.hostname = hostname.c_str();
  std::snprintf(plan.tmp_options, sizeof plan.tmp_options, "size=%lld,mode=1777",
                static_cast<long long>(options_.tmp_bytes));
  plan.host_env_prefix =
      static_cast<size_t>(std::snprintf(plan.host_env, sizeof plan.host_env, "%s=", api::kEnvNatsHost));
  plan.proc = stage + "/proc";
  plan.tmp = stage + "/tmp";
  plan.dev = stage + "/dev";
  plan.nex = stage + kSandboxWorkDir;
  plan.agent_target = stage + kSandboxAgentPath;
  for (const char* d : {"null", "zero", "full", "random", "urandom"})
    plan.dev_nodes.push_back(plan.dev + "/" + d);
  std::vector<std::string> env = spec.env;
  env.push_back("PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
  env.push_back("HOME=/tmp");
  env.push_back(std::string(api::kEnvNatsPort) + "=" + std::to_string(spec.internal_nats_port));
  env.push_back(std::string(api::kEnvArtifactPath) + "=" + kSandboxWorkDir + "/" +
                spec.artifact_name);
  if (spec.trigger_channel_fd >= 0) {
    plan.trigger_fd = spec.trigger_channel_fd;
    env.push_back(std::string(api::kEnvTriggerFd) + "=" + std::to_string(kPassedFd));
  }
  std::string agent_path = kSandboxAgentPath;
  plan.argv = {agent_path.data(), nullptr};
  for (auto& e : env) plan.envp.push_back(e.data());
  plan.envp.push_back(plan.host_env);
  plan.envp.push_back(nullptr);
  plan.seccomp = &seccomp_;

  auto close_all = [&] {
    for (int fd : {go[0], go[1], err[0], err[1], plan.log_fd, plan.null_fd})
      if (fd >= 0) close(fd);
  };
  if (plan.log_fd < 0 || plan.null_fd < 0) {
    close_all();
    s.release();
    return fail(ErrorCode::kIo, "cannot open " + spec.log_file.string());
  }
  constexpr size_t kStack = 256 * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
                     -1, 0);
  if (stack == MAP_FAILED) {
    close_all();
    s.release();
    return fail(ErrorCode::kIo, "mmap: " + errno_text(errno));
  }
  const int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
  s.pid_ = clone(child_main, static_cast<char*>(stack) + kStack, flags, &plan);
  const int clone_errno = errno;
  munmap(stack, kStack);  // the child runs on its own copy
  close(go[0]);
  close(err[1]);
  close(plan.log_fd);
  close(plan.null_fd);
  go[0] = err[1] = plan.log_fd = plan.null_fd = -1;
  if (s.pid_ < 0) {
    close_all();
    s.release();
    return fail(ErrorCode::kIo, "clone: " + errno_text(clone_errno));
  }
  auto abort_start = [&](Error e) -> Result<std::unique_ptr<Sandbox>> {
    close_all();
    ::kill(s.pid_, SIGKILL);
    s.stop(std::chrono::milliseconds(0));
    return fail(std::move(e));
  };
  if (auto st = s.cgroup_.add(s.pid_); !st) return abort_start(st.error());
  // Keep the network namespace by a bind mount, so it can be taken down (and its address
  // released) even after the sandbox's processes are gone, by this node or its successor.
  s.netns_ = instance_dir() / "netns" / spec.workload_id;
  { std::ofstream touch(s.netns_); }
  const std::string ns_source = "/proc/" + std::to_string(s.pid_) + "/ns/net";
  if (mount(ns_source.c_str(), s.netns_.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return abort_start({ErrorCode::kIo, "bind " + ns_source + ": " + errno_text(errno)});
  auto attachment =
      cni_add(options_.cni, network_, container_id(options_.instance, spec.workload_id), s.netns_);
  if (!attachment) return abort_start(attachment.error().wrap("sandbox network"));
  s.attached_ = true;
  s.cni_result_ = attachment->result;
  s.gateway_ = attachment->gateway;
  { std::ofstream(s.netns_.string() + ".json") << s.cni_result_.dump(); }

  const std::string go_message = s.gateway_ + "\n";
  if (write(go[1], go_message.data(), go_message.size()) != static_cast<ssize_t>(go_message.size()))
    return abort_start({ErrorCode::kIo, "cannot release the sandbox's first process"});
  close(go[1]);
  go[1] = -1;
  std::string failure;
  char buf[256];
  for (ssize_t n; (n = read(err[0], buf, sizeof buf)) > 0;) failure.append(buf, static_cast<size_t>(n));
  close(err[0]);
  err[0] = -1;
  if (!failure.empty()) {
    const size_t nl = failure.find('\n');
    const int code = std::atoi(failure.c_str() + nl + 1);
    return abort_start({ErrorCode::kInternal, "namespace sandbox: " + failure.substr(0, nl) +
                                                  " failed: " + errno_text(code)});
  }
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

}  // namespace nex::sandbox
