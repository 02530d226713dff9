// The microvm sandbox: each workload in a QEMU microVM with its own (Debian) kernel. Nex's
// walkthrough with the CLI, a function and the host services from inside a VM, the escape
// workload of the namespace tests run in a VM, and what a stopped workload and a killed node
// leave running (nothing).
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "core/subprocess.h"
#include "microvm/microvm_driver.h"
#include "testing/cli.h"
#include "testing/control_plane_state.h"
#include "testing/microvm_host.h"
#include "testing/node_fixture.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::Collector;
using testing::MicrovmHost;

// The live VMMs (QEMU names each VM nex-vm-{workload id}) of workload `id`, or, with an empty
// id, those whose parent is `parent` (other tests run VMs beside this one).
std::vector<pid_t> vmms(const std::string& id, pid_t parent = 0) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0]))) continue;
    const std::string args = testing::slurp(e.path() / "cmdline");
    if (args.find(std::string("nex-vm-") + (id.empty() ? "" : id + '\0')) == std::string::npos)
      continue;
    const std::string stat = testing::slurp(e.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || stat.size() < close + 4 || stat[close + 2] == 'Z') continue;
    if (parent && std::atoi(stat.c_str() + close + 4) != parent) continue;
    out.push_back(std::stoi(pid));
  }
  return out;
}

bool alive(pid_t pid) {
  const std::string stat = testing::slurp("/proc/" + std::to_string(pid) + "/stat");
  const size_t close = stat.rfind(')');
  return close != std::string::npos && stat.size() > close + 2 && stat[close + 2] != 'Z';
}

// A process's own memory: anonymous pages (a VMM's guest RAM among them), not the page cache
// of files it maps (the kernel image every VM shares).
int64_t anonymous_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8)) * 1024;
  }
  return 0;
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds t) {
  const auto deadline = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return f();
}

// Live nex-vm-gateway processes whose arguments name `vm_dir` (one VM's; its QEMU's arguments
// name it too, but QEMU is no gateway process).
int gateway_processes(const std::string& vm_dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0]))) continue;
    const std::string args = testing::slurp(e.path() / "cmdline");
    const std::string argv0 = args.substr(0, args.find('\0'));
    if (fs::path(argv0).filename() == "nex-vm-gateway" && args.find(vm_dir) != std::string::npos &&
        alive(std::stoi(pid)))
      ++n;
  }
  return n;
}

// Established TCP connections to 127.0.0.1:`port`, counted on the listening side.
int connections_to(int port) {
  int n = 0;
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // the header
  char hex[8];
  std::snprintf(hex, sizeof hex, ":%04X", port);
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (local.size() > 5 && local.compare(local.size() - 5, 5, hex) == 0 && state == "01") ++n;
  }
  return n;
}

class MicrovmTest : public testing::NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    NEX_REQUIRE_MICROVM_SANDBOX();
    std::printf("microVM accelerator: %s\n", MicrovmHost::get().accelerator().c_str());
  }
  // Generous: under TCG (no hardware virtualization) a VM boots in seconds, not milliseconds.
  static constexpr auto kBoot = 120s;
};

// Nex's walkthrough, typed: `nex node up` with the microvm sandbox, `nex node ls`,
// `nex devrun ./echoservice NATS_URL=...`, a request answered, `nex logs`, `nex stop`; then the
// node is killed with SIGKILL and no VM outlives it.
TEST_F(MicrovmTest, TheSeedWalkthroughRunsInAVmAndNoVmOutlivesItsWorkloadOrNode) {
  // The CLI makes NEXCLIFILES itself, as a user's first devrun does (and the next test gets
  // the fixture's again).
  files_.reset();
  ASSERT_OK(js_->delete_stream("OBJ_NEXCLIFILES"));
  struct DropCliBucket {
    nats::JetStream& js;
    ~DropCliBucket() { (void)js.delete_stream("OBJ_NEXCLIFILES"); }
  } drop{*js_};
  const fs::path home = state_dir_.string() + "-home";
  fs::create_directories(home);
  fs::copy_file(testing::kBinDir / "echoservice", home / "echoservice");
  const fs::path config = home / "config.json";
  const auto c = MicrovmHost::get().config();
  std::ofstream(config) << json{
      {"sandbox", "microvm"},
      {"kernel_filepath", c.kernel_filepath},
      {"initrd_filepath", c.initrd_filepath},
      {"rootfs_filepath",
       c.rootfs_filepath}}.dump();
  const testing::CliEnvironment user{
      .cwd = home, .env = {"HOME=" + home.string(), "NATS_URL=" + server().url()}};
  auto node = testing::spawn_nex(
      {"node", "up", "--config", config.string(), "--state-dir", (state_dir_ / "node").string()},
      user, home / "node.log");
  ASSERT_TRUE(node) << node.error().message;
  const std::string node_id = wait_for_pinged_node();
  ASSERT_FALSE(node_id.empty()) << testing::slurp(home / "node.log");
  EXPECT_NE(testing::slurp(home / "node.log").find("Sandbox driver: microvm"), std::string::npos);
  // `nex devrun` waits 2 s for its answer: a user starts once the node's VM is booted.
  ASSERT_TRUE(eventually(
      [&] {
        return testing::slurp(home / "node.log").find("Warm pool ready") != std::string::npos;
      },
      kBoot))
      << testing::slurp(home / "node.log");

  auto ls = testing::run_nex({"node", "ls"}, user, home / "ls.out");
  EXPECT_NE(ls.out.find(node_id), std::string::npos) << ls.out;
  auto logs = testing::spawn_nex({"logs"}, user, home / "logs.out");
  ASSERT_TRUE(logs);
  for (int i = 0;
       i < 250 && testing::slurp(home / "logs.out").find("Following") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  ASSERT_NE(testing::slurp(home / "logs.out").find("Following"), std::string::npos);

  auto run = testing::run_nex({"devrun", "./echoservice", "NATS_URL=" + server().url()}, user,
                              home / "devrun.out");
  ASSERT_EQ(run.code, 0) << run.out << testing::slurp(home / "node.log");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(run.out, m, std::regex("with ID: ([a-v0-9]{20})"))) << run.out;
  const std::string id = m[1];
  EXPECT_TRUE(echo_answers("svc.echo", kBoot)) << "the echo service in the VM never answered";
  EXPECT_EQ(vmms(id).size(), 1u) << "the workload is not in a VM of its own";
  EXPECT_TRUE(eventually(
      [&] {
        return testing::slurp(home / "logs.out").find("Echo service using NATS url") !=
               std::string::npos;
      },
      10s))
      << testing::slurp(home / "logs.out");

  auto stop =
      testing::run_nex({"stop", node_id, id, "--issuer", (home / ".nex/issuer.nk").string()}, user,
                       home / "stop.out");
  EXPECT_EQ(stop.code, 0) << stop.out;
  EXPECT_TRUE(eventually([&] { return vmms(id).empty(); }, 10s))
      << "the stopped workload's VM runs on";
  EXPECT_FALSE(echo_answers("svc.echo", 1s));

  // The warm VM the pool keeps, then SIGKILL: the node's VMMs die with it.
  ASSERT_TRUE(eventually([&] { return !vmms("", node->pid()).empty(); }, kBoot));
  const auto warm = vmms("", node->pid());
  ASSERT_TRUE(node->signal(SIGKILL));
  node->wait_for(5s);
  EXPECT_TRUE(eventually([&] { return std::none_of(warm.begin(), warm.end(), alive); }, 10s))
      << "a VM outlived the node";
  logs->terminate(1s);
  fs::remove_all(home);
}

TEST_F(MicrovmTest, AFunctionAndTheHostServicesWorkFromInsideAVm) {
  ASSERT_OK(files_->put_file("visits.js", fs::path(NEX_EXAMPLES_DIR) / "hostservices/visits.js"));
  start_sandboxed_node(MicrovmHost::get().config());
  json r = deploy(function_request("visits", "visits.js", {"visits.>"}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + kBoot;
  while (answer.empty() && std::chrono::steady_clock::now() < deadline) {
    if (auto a = conn_->request("visits.vm", "", 1s)) answer = std::string(a->data());
  }
  EXPECT_EQ(answer, "visits.vm: 1");
  auto again = conn_->request("visits.vm", "", 10s);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->data(), "visits.vm: 2");  // the KV host service, from inside the VM
  EXPECT_EQ(vmms(r["data"]["id"]).size(), 1u);

  // A service whose NATS is elsewhere could never reach it from a VM: refused, saying why.
  json far = deploy(deploy_request("echoservice", {{"NATS_URL", "nats://192.0.2.1:4222"}}));
  ASSERT_FALSE(far["error"].is_null()) << far.dump();
  const std::string why = far["error"].dump();
  EXPECT_NE(why.find("NATS_URL"), std::string::npos) << why;
  EXPECT_NE(why.find("host's loopback"), std::string::npos) << why;
  const std::string node_id = node_->id();
  node_.reset();
  EXPECT_TRUE(vmms("", getpid()).empty()) << "a VM outlived its node's stop";
  EXPECT_FALSE(fs::exists("/run/nex/" + node_id)) << "VM state left in /run/nex";
}

// The namespace tests' escape workload, in a VM: the kernel it sees is the guest's, and every way
// out (host files and processes, the control NATS by loopback, gateway or QEMU's host alias,
// another workload's subjects, the node's control plane through the host-service RPC,
// privileged calls, a fork bomb, memory past memsize_mib) stays in.
TEST_F(MicrovmTest, EscapeAttemptsStayInsideTheVm) {
  ASSERT_OK(files_->put_file("escape", testing::kBinDir / "escape"));
  constexpr int64_t kMemsizeMib = 192;
  start_sandboxed_node(MicrovmHost::get().config(kMemsizeMib));

  json echo = deploy(deploy_request(
      "echoservice", {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.vm"}}));
  ASSERT_TRUE(echo["error"].is_null()) << echo.dump();
  ASSERT_TRUE(echo_answers("svc.echo.vm", kBoot)) << "the echo service in its VM never answered";

  Collector logs(*conn_, "$NEX.logs.default.*.escape.*");
  const std::string port = server().url().substr(server().url().rfind(':') + 1);
  testing::ControlPlaneState before;
  ASSERT_NO_FATAL_FAILURE(before.take(*js_, *node_));
  auto env = testing::control_plane_escape_env(*node_);
  env.insert({{"ESCAPE_STATE_DIR", state_dir_.string()},
              {"ESCAPE_CONTROL_PORT", port},
              {"ESCAPE_OTHER_ID", echo["data"]["id"]},
              {"ESCAPE_VM_GATEWAY", std::string(microvm::kGatewayAddress) + ":" +
                                        std::to_string(microvm::kExposedPortsGateway)},
              {"ESCAPE_HOST_ALIAS", "10.0.2.2"}});
  json req = deploy_request("escape", env);
  req["location"] = "nats://NEXCLIFILES/escape";
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  ASSERT_TRUE(logs.wait_for("escape attempts done", 300s)) << "the escape workload never finished";

  utsname host{};
  uname(&host);
  auto kernel = logs.wait_for("kernel ", 0ms);
  ASSERT_TRUE(kernel);
  const std::string seen = json::parse(kernel->second)["text"];
  EXPECT_EQ(seen, "kernel " + MicrovmHost::get().kernel_release());
  EXPECT_NE(seen, std::string("kernel ") + host.release) << "the workload sees the host's kernel";
  for (const char* check :
       {"host-shadow", "node-state", "agent-environ", "host-processes", "control-nats-loopback",
        "control-nats-gateway", "control-nats-vm-gateway", "control-nats-host-alias",
        "other-workload", "inherited-descriptors", "mount", "ptrace", "unshare", "setuid", "clock",
        "fill-tmp", "fork-bomb", "memory"}) {
    auto line = logs.wait_for(std::string("check ") + check + ": ", 1s);
    ASSERT_TRUE(line) << "no report for " << check;
    EXPECT_NE(line->second.find("contained"), std::string::npos) << line->second;
  }
  // The node's control plane, through the host-service RPC from inside the VM: each call
  // refused, saying why, and nothing written.
  ASSERT_NO_FATAL_FAILURE(testing::expect_control_plane_refused(logs));
  before.expect_unchanged({id});
  EXPECT_TRUE(logs.wait_for("escape attempts done: 0 escaped", 0ms));
  auto bomb = logs.wait_for("fork bomb made", 0ms);
  ASSERT_TRUE(bomb);
  std::smatch m;
  const std::string bomb_text = json::parse(bomb->second)["text"];
  ASSERT_TRUE(std::regex_search(bomb_text, m, std::regex("made ([0-9]+) processes")));
  EXPECT_LT(std::stoi(m[1]), 512) << "the process limit did not hold";

  // The 8 GiB the workload asked for stayed inside its VM: the VMM holds about its guest's memory.
  const auto pids = vmms(id);
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_LT(anonymous_bytes(pids[0]), (kMemsizeMib + 128) << 20)
      << "the VMM grew past its guest's memory";

  // Everything else keeps working.
  EXPECT_TRUE(echo_answers("svc.echo.vm"));
  json in = info();
  ASSERT_TRUE(in["error"].is_null()) << in.dump();
  EXPECT_EQ(in["data"]["machines"].size(), 2u) << in.dump();
}

// A workload that opens 200 connections to its VM's gateway at once: at most the cap reach the
// host's NATS, the rest are closed at once, no host process is left per connection, the node
// says so once (not 136 times), and the workload reaches its NATS again once it lets go.
TEST_F(MicrovmTest, AVmFloodingItsGatewayGetsAtMostTheCapAndNoProcessPerConnection) {
  ASSERT_OK(files_->put_file("gateway_flood", testing::kBinDir / "gateway_flood"));
  const auto config = MicrovmHost::get().config();
  const auto cap = config.microvm_gateway_max_connections;  // the default
  constexpr int kFlood = 200;
  start_sandboxed_node(config);
  const int control_port = std::stoi(server().url().substr(server().url().rfind(':') + 1));
  const int before = connections_to(control_port);

  Collector logs(*conn_, "$NEX.logs.default.*.flood.*");
  json req = deploy_request(
      "flood", {{"NATS_URL", server().url()},  // exposes the control NATS's port to the VM
                {"FLOOD_GATEWAY", std::string(microvm::kGatewayAddress) + ":" +
                                      std::to_string(microvm::kExposedPortsGateway)},
                {"FLOOD_PORT", std::to_string(control_port)},
                {"FLOOD_COUNT", std::to_string(kFlood)}});
  req["location"] = "nats://NEXCLIFILES/gateway_flood";
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  const std::string vm_dir = "/run/nex/" + node_->id() + "/vms/" + id;

  // While the VM floods: how many gateway processes there are at once, at most.
  int peak = 0;
  std::optional<std::pair<std::string, std::string>> flood;
  for (const auto deadline = std::chrono::steady_clock::now() + 300s;
       !flood && std::chrono::steady_clock::now() < deadline;) {
    peak = std::max(peak, gateway_processes(vm_dir));
    flood = logs.wait_for("flood: ", 50ms);
  }
  ASSERT_TRUE(flood) << "the flood workload never reported";
  std::printf("at most %d gateway processes at once\n", peak);
  EXPECT_LT(peak, kFlood / 4) << "a gateway process per connection";
  const std::string text = json::parse(flood->second)["text"];
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      text, m, std::regex("flood: ([0-9]+) greeted, ([0-9]+) closed, ([0-9]+) silent of")))
      << text;
  const int greeted = std::stoi(m[1]), closed = std::stoi(m[2]);
  std::printf("%s\n", text.c_str());
  EXPECT_LE(greeted, cap) << text;
  EXPECT_GE(greeted, cap - 8) << "the agent holds a few of the cap, not most: " << text;
  EXPECT_GE(closed, kFlood - cap) << text;
  // The held connections: none has a host process of its own.
  EXPECT_TRUE(eventually([&] { return gateway_processes(vm_dir) == 0; }, 10s))
      << gateway_processes(vm_dir) << " gateway processes for " << kFlood << " connections";
  EXPECT_LE(connections_to(control_port) - before, cap)
      << "the control NATS took more connections than the cap";
  // Told once, as the workload's doing.
  EXPECT_TRUE(logs.wait_for("its gateway", 10s)) << "the node never said it refused connections";
  EXPECT_EQ(logs.wait_for_count("its gateway", 2, 2s), 1u) << "logged more than once per burst";

  // Let go: it reaches its NATS through the gateway again.
  std::optional<std::pair<std::string, std::string>> after;
  for (int i = 0; i < 60 && !after; ++i) {
    ASSERT_OK(conn_->publish("flood.release", ""));
    after = logs.wait_for("after flood: ", 1s);
  }
  ASSERT_TRUE(after) << "the workload never got the release";
  EXPECT_NE(after->second.find("after flood: greeted"), std::string::npos) << after->second;

  // The node stops: the VM's gateway socket goes with it, and no gateway process stays.
  node_.reset();
  EXPECT_FALSE(fs::exists(vm_dir)) << "the VM's gateway socket was left behind";
  EXPECT_EQ(gateway_processes(vm_dir), 0);
}

// A VMM that outlived its node (the parent-death signal makes that rare, not impossible: the
// node's host may have restarted its supervisor, say): the next node with the same state stops
// it, and only it, from the pid files in /run/nex/{node id}/vms.
TEST_F(MicrovmTest, ANodeStartingStopsTheVmsItsKilledPredecessorLeft) {
  start_sandboxed_node(MicrovmHost::get().config());
  const std::string node_id = node_->id();
  node_.reset();
  const fs::path vms = "/run/nex/" + node_id + "/vms";
  fs::create_directories(vms);
  const std::string left = "dc8leftover00000000a";
  auto vmm = Subprocess::spawn(
      {.argv = {"bash", "-c", "exec -a nex-vm-" + left + " sleep 60"}, .null_stdin = true});
  ASSERT_TRUE(vmm);
  auto bystander = Subprocess::spawn({.argv = {"sleep", "60"}, .null_stdin = true});
  ASSERT_TRUE(bystander);
  ASSERT_TRUE(eventually([&] { return vmms(left).size() == 1; }, 5s));
  std::ofstream(vms / (left + ".pid")) << vmm->pid() << "\n";
  // A pid file whose process is no VMM of ours (its pid reused since): left alone.
  std::ofstream(vms / "dc8leftover00000000b.pid") << bystander->pid() << "\n";

  start_sandboxed_node(MicrovmHost::get().config());
  ASSERT_EQ(node_->id(), node_id);
  EXPECT_TRUE(eventually([&] { return !alive(vmm->pid()); }, 5s)) << "the leftover VM runs on";
  EXPECT_TRUE(alive(bystander->pid())) << "a process that is no VM of ours was killed";
  EXPECT_FALSE(fs::exists(vms / (left + ".pid")));
  EXPECT_FALSE(fs::exists(vms / "dc8leftover00000000b.pid"));
}

// The guest's files in a folder only root may enter (what `mktemp -d` makes, or a home folder):
// each file is readable by all, but a VMM, which runs as a user of its own, cannot open it.
class MicrovmClosedFolderTest : public MicrovmTest {
 protected:
  void SetUp() override {
    MicrovmTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    folder_ = state_dir_.string() + "-guest";
    fs::create_directories(folder_);
    const auto c = MicrovmHost::get().config();
    // Hard links: the same files (in the same /tmp), without copying an image.
    for (const fs::path& file : {c.kernel_filepath, c.initrd_filepath, c.rootfs_filepath})
      fs::create_hard_link(file, folder_ / file.filename());
    config_ = c;
    config_.kernel_filepath = folder_ / c.kernel_filepath.filename();
    config_.initrd_filepath = folder_ / c.initrd_filepath.filename();
    config_.rootfs_filepath = folder_ / c.rootfs_filepath.filename();
    config_file_ = state_dir_.string() + "-microvm.json";
    std::ofstream(config_file_) << json{
        {"sandbox", "microvm"},
        {"kernel_filepath", config_.kernel_filepath},
        {"initrd_filepath", config_.initrd_filepath},
        {"rootfs_filepath", config_.rootfs_filepath},
        {"machine_pool_size", 1}}.dump();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(folder_, ec);
    fs::remove(config_file_, ec);
    MicrovmTest::TearDown();
  }
  void close_folder() { fs::permissions(folder_, fs::perms(0700)); }
  void open_folder() { fs::permissions(folder_, fs::perms(0755)); }

  fs::path folder_;
  fs::path config_file_;
  node::NodeConfig config_;
};

TEST_F(MicrovmClosedFolderTest, PreflightAndTheNodeCheckTheGuestFilesAsTheVmmsUser) {
  close_folder();
  const testing::CliEnvironment user{.cwd = fs::temp_directory_path()};
  auto pre = testing::run_nex({"node", "preflight", "--config", config_file_.string()}, user,
                              state_dir_.string() + "-preflight.out");
  fs::remove(state_dir_.string() + "-preflight.out");
  EXPECT_EQ(pre.code, 1) << pre.out;
  EXPECT_EQ(pre.out.find("All dependencies satisfied"), std::string::npos) << pre.out;
  for (const fs::path& file :
       {config_.kernel_filepath, config_.initrd_filepath, config_.rootfs_filepath}) {
    EXPECT_NE(pre.out.find("Missing Dependency - " + file.string()), std::string::npos)
        << file << " was not checked as the VMM's user:\n"
        << pre.out;
  }
  EXPECT_NE(pre.out.find("cannot be read by the VMMs' users"), std::string::npos) << pre.out;
  // The node refuses to start with them, saying the same, rather than start VMs that fail.
  auto n = node::Node::start({.config = config_,
                              .control = {.urls = {server().url()}},
                              .state_dir = state_dir_,
                              .version = "test"});
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().message.find("cannot be read by the VMMs' users"), std::string::npos)
      << n.error().message;
  EXPECT_TRUE(vmms("", getpid()).empty());
  // Opened to all, it passes.
  open_folder();
  pre = testing::run_nex({"node", "preflight", "--config", config_file_.string()}, user,
                         state_dir_.string() + "-preflight.out");
  fs::remove(state_dir_.string() + "-preflight.out");
  EXPECT_EQ(pre.code, 0) << pre.out;
}

// A VMM that exits (here: its guest's files were closed to it after the node started, and the
// warm VM was killed) is reaped, its last words are in the node's log, the pool backs off
// saying so, and a deploy is refused at once with the reason instead of timing out.
TEST_F(MicrovmClosedFolderTest, AVmmThatExitsIsReapedToldAndDeploysAreRefusedWithTheReason) {
  const fs::path log = state_dir_.string() + "-node.log";
  auto node = testing::spawn_nex({"node", "up", "-s", server().url(), "--config",
                                  config_file_.string(), "--state-dir", state_dir_.string()},
                                 {.cwd = fs::temp_directory_path()}, log);
  ASSERT_TRUE(node) << node.error().message;
  const std::string node_id = wait_for_pinged_node();
  ASSERT_FALSE(node_id.empty()) << testing::slurp(log);
  ASSERT_TRUE(eventually(
      [&] { return testing::slurp(log).find("Warm pool ready") != std::string::npos; }, kBoot))
      << testing::slurp(log);
  // `nex` is a shell's exec: the node is the spawned process itself.
  const auto warm = vmms("", node->pid());
  ASSERT_EQ(warm.size(), 1u);
  close_folder();
  ASSERT_EQ(::kill(warm[0], SIGKILL), 0);
  ASSERT_TRUE(eventually(
      [&] { return testing::slurp(log).find("Permission denied") != std::string::npos; }, 30s))
      << "the failing VMM's stderr is not in the node's log:\n"
      << testing::slurp(log);
  const std::string said = testing::slurp(log);
  EXPECT_NE(said.find("exited while idle in the pool"), std::string::npos) << said;
  EXPECT_NE(said.find("Could not open '" + config_.rootfs_filepath.string() + "'"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("Warm pool: trying again in"), std::string::npos) << said;
  // No VMM of the node's is left a zombie.
  EXPECT_TRUE(eventually(
      [&] {
        int zombies = 0;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc", ec)) {
          const std::string stat = testing::slurp(e.path() / "stat");
          const size_t close = stat.rfind(')');
          if (close != std::string::npos && stat.size() > close + 4 && stat[close + 2] == 'Z' &&
              std::atoi(stat.c_str() + close + 4) == node->pid())
            ++zombies;
        }
        return zombies == 0;
      },
      5s))
      << "a VMM that exited was left a zombie";
  const auto sent = std::chrono::steady_clock::now();
  json r =
      control("$NEX.DEPLOY.default." + node_id,
              signed_deploy(deploy_request_to(
                                node_id, control("$NEX.PING." + node_id, "")["data"]["target_xkey"],
                                "echoservice", {{"NATS_URL", server().url()}}))
                  .dump(),
              kBoot);
  ASSERT_TRUE(r["error"].is_string()) << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("Permission denied"), std::string::npos) << r.dump();
  EXPECT_LT(std::chrono::steady_clock::now() - sent, 10s) << "the deploy waited for a VM in vain";
  node->terminate(15s);
  fs::remove(log);
}

TEST_F(MicrovmTest, AMissingKernelIsAClearErrorAndStartsNothing) {
  auto config = MicrovmHost::get().config();
  config.kernel_filepath = state_dir_ / "no-such-vmlinux";
  auto n = node::Node::start({.config = config,
                              .control = {.urls = {server().url()}},
                              .state_dir = state_dir_,
                              .version = "test"});
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().message.find("kernel_filepath"), std::string::npos) << n.error().message;
  EXPECT_NE(n.error().message.find("nex node preflight --init"), std::string::npos)
      << n.error().message;
  EXPECT_TRUE(vmms("", getpid()).empty());
}

}  // namespace
}  // namespace nex
