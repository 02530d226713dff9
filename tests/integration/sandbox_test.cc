// The namespace sandbox, from the inside: a workload that tries every way out (host files,
// host processes, the control NATS, another workload's subjects, the node's control plane
// through the host-service RPC, mount, ptrace, new namespaces, root, the clock, a fork bomb,
// memory past memsize_mib, filling /tmp, what /proc and the mounts show of the host, the host's
// ports and another sandbox's) finds each one denied or contained, while a service beside it and
// the node keep working; and the node leaves nothing behind (addresses, links, firewall rules,
// cgroups, mounts) when it stops.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "core/subprocess.h"
#include "sandbox/firewall.h"

#include "testing/control_plane_state.h"
#include "testing/node_fixture.h"
#include "testing/sandbox_host.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::Collector;
using testing::SandboxHost;

class SandboxTest : public testing::NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    NEX_REQUIRE_NAMESPACE_SANDBOX();
  }
  // What a workload logged after `prefix`, as a user watching its logs sees it.
  static std::string logged_value(const std::string& message, const std::string& prefix) {
    const std::string text = json::parse(message)["text"];
    const size_t at = text.find(prefix);
    return at == std::string::npos ? "" : text.substr(at + prefix.size());
  }
  // A host file's first line.
  static std::string host_file(const fs::path& path) {
    std::string line;
    std::ifstream in(path);
    std::getline(in, line);
    return line;
  }
  // Nothing of the node's sandboxes is left on the host.
  void expect_nothing_left(const std::string& node_id) {
    std::error_code ec;
    const fs::path leases = "/var/lib/cni/networks/" + SandboxHost::get().network();
    for (const auto& e : fs::directory_iterator(leases, ec)) {
      const std::string name = e.path().filename();
      EXPECT_TRUE(name == "lock" || name.rfind("last_reserved_ip", 0) == 0)
          << "address still leased: " << name;
    }
    EXPECT_FALSE(fs::exists("/run/nex/" + node_id)) << "sandbox state left in /run/nex";
    for (const char* root :
         {"/sys/fs/cgroup/nex/", "/sys/fs/cgroup/memory/nex/", "/sys/fs/cgroup/pids/nex/"})
      EXPECT_FALSE(fs::exists(root + node_id)) << "cgroups left in " << root;
    // Its firewall: no chain of its own, no jump to one, no link's rule.
    const auto [in, fwd] = sandbox::SandboxFirewall::chains(node_id);
    const std::string rules = testing::host_firewall_rules();
    EXPECT_EQ(rules.find(in), std::string::npos) << "firewall rules left:\n" << rules;
    EXPECT_EQ(rules.find(fwd), std::string::npos) << "firewall rules left:\n" << rules;
    // Its links: no host interface keeps an address of the test's network.
    for (const auto& name : testing::host_interfaces_in(SandboxHost::get().subnet_prefix()))
      ADD_FAILURE() << "a sandbox link is left on the host: " << name;
  }
};

TEST_F(SandboxTest, EscapeAttemptsAreContainedAndEverythingElseKeepsWorking) {
  ASSERT_OK(files_->put_file("escape", testing::kBinDir / "escape"));
  start_sandboxed_node(SandboxHost::get().config(/*memsize_mib=*/64));
  const std::string node_id = node_->id();

  // A service beside it, reaching the control NATS through its NATS_URL on loopback.
  json echo = deploy(deploy_request(
      "echoservice", {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.sandboxed"}}));
  ASSERT_TRUE(echo["error"].is_null()) << echo.dump();
  ASSERT_TRUE(echo_answers("svc.echo.sandboxed")) << "the sandboxed echo service never answered";

  Collector logs(*conn_, "$NEX.logs.default.*.escape.*");
  const std::string port = server().url().substr(server().url().rfind(':') + 1);
  const std::string build_dir = testing::kBinDir.parent_path().string();
  testing::ControlPlaneState before;
  ASSERT_NO_FATAL_FAILURE(before.take(*js_, *node_));
  auto env = testing::control_plane_escape_env(*node_);
  env.insert({{"ESCAPE_STATE_DIR", state_dir_.string()},
              {"ESCAPE_CONTROL_PORT", port},
              {"ESCAPE_OTHER_ID", echo["data"]["id"]},
              {"ESCAPE_SHARED_KERNEL", "1"},
              {"ESCAPE_HOST_PATHS", state_dir_.string() + ":" + build_dir}});
  json req = deploy_request("escape", env);
  req["location"] = "nats://NEXCLIFILES/escape";
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  ASSERT_TRUE(logs.wait_for("escape attempts done", 90s)) << "the escape workload never finished";
  for (const char* check :
       {"host-shadow", "node-state", "agent-environ", "host-processes", "control-nats-loopback",
        "control-nats-gateway", "other-workload", "inherited-descriptors", "proc-host-files",
        "proc-sys-read-only", "mountinfo-host-paths", "mount", "ptrace", "unshare", "setuid",
        "clock", "fill-tmp", "fork-bomb", "memory"}) {
    auto line = logs.wait_for(std::string("check ") + check + ": ", 1s);
    ASSERT_TRUE(line) << "no report for " << check;
    EXPECT_NE(line->second.find("contained"), std::string::npos) << line->second;
  }
  // The node's control plane, through the host-service RPC: each call refused, saying why, and
  // nothing written.
  ASSERT_NO_FATAL_FAILURE(testing::expect_control_plane_refused(logs));
  const std::string escape_id = r["data"]["id"];
  before.expect_unchanged({escape_id});
  EXPECT_FALSE(logs.wait_for("ESCAPED", 0ms)) << logs.wait_for("ESCAPED", 0ms)->second;
  EXPECT_TRUE(logs.wait_for("escape attempts done: 0 escaped", 0ms));
  auto bomb = logs.wait_for("fork bomb made", 0ms);
  ASSERT_TRUE(bomb);
  std::smatch m;
  const std::string bomb_text = json::parse(bomb->second)["text"];
  ASSERT_TRUE(std::regex_search(bomb_text, m, std::regex("made ([0-9]+) processes")));
  EXPECT_LT(std::stoi(m[1]), 512) << "the pids limit did not hold";
  // What the sandbox's /proc says about the machine is not the host's.
  auto cmdline = logs.wait_for("proc cmdline: ", 0ms);
  ASSERT_TRUE(cmdline);
  EXPECT_NE(logged_value(cmdline->second, "proc cmdline: "), host_file("/proc/cmdline"))
      << "the sandbox reads the host's kernel command line";
  auto boot_id = logs.wait_for("boot_id ", 0ms);
  ASSERT_TRUE(boot_id);
  const std::string sandbox_boot_id = logged_value(boot_id->second, "boot_id ");
  EXPECT_EQ(sandbox_boot_id.size(), 36u) << sandbox_boot_id;
  EXPECT_NE(sandbox_boot_id, host_file("/proc/sys/kernel/random/boot_id"))
      << "the sandbox reads the host's boot id";

  // Everything else keeps working: the neighbour answers, the node answers, the escapee runs.
  EXPECT_TRUE(echo_answers("svc.echo.sandboxed"));
  json in = info();
  ASSERT_TRUE(in["error"].is_null()) << in.dump();
  EXPECT_EQ(in["data"]["machines"].size(), 2u) << in.dump();

  node_.reset();
  expect_nothing_left(node_id);
}

// A sandbox's network reaches the internal NATS of its node and nothing else of the host or of
// other sandboxes: the test's TCP and UDP listeners on all of the host's addresses (through the
// gateway, the host's other addresses and IPv6 link-local) and another sandbox's listeners stay
// silent, while the agent works through the internal NATS.
TEST_F(SandboxTest, ASandboxReachesItsInternalNatsAndNoOtherPortOfTheHostOrOfOtherSandboxes) {
  testing::HostListeners host;
  ASSERT_NE(host.port(), 0) << "cannot listen on every address of this host";
  ASSERT_OK(files_->put_file("escape", testing::kBinDir / "escape"));
  start_sandboxed_node(SandboxHost::get().config());

  Collector peer_logs(*conn_, "$NEX.logs.default.*.peer.*");
  json peer = deploy_request("peer", {{"ESCAPE_LISTEN_PORT", "7411"}});
  peer["location"] = "nats://NEXCLIFILES/escape";
  json r = deploy(peer);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto listening = peer_logs.wait_for("listening on ", 30s);
  ASSERT_TRUE(listening) << "the other sandbox never listened";
  const std::string peer_address = logged_value(listening->second, "listening on ");

  Collector logs(*conn_, "$NEX.logs.default.*.escape.*");
  json req = deploy_request("escape", {{"ESCAPE_HOST_PORT", std::to_string(host.port())},
                                       {"ESCAPE_HOST_ADDRS", testing::host_ipv4_addresses()},
                                       {"ESCAPE_PEER", peer_address}});
  req["location"] = "nats://NEXCLIFILES/escape";
  r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  ASSERT_TRUE(logs.wait_for("escape attempts done", 90s)) << "the escape workload never finished";
  for (const char* check :
       {"host-tcp-gateway", "host-udp-gateway", "host-tcp-addresses", "host-udp-addresses",
        "host-tcp-ipv6", "host-udp-ipv6", "other-sandbox-tcp", "other-sandbox-udp"}) {
    auto line = logs.wait_for(std::string("check ") + check + ": ", 0ms);
    ASSERT_TRUE(line) << "no report for " << check;
    EXPECT_NE(line->second.find("contained"), std::string::npos) << line->second;
  }
  for (const auto& contact : host.contacts()) ADD_FAILURE() << "a host listener saw " << contact;
  if (auto contact = peer_logs.wait_for("peer: ", 0ms))
    ADD_FAILURE() << "the other sandbox was reached: " << contact->second;
  // The internal NATS answers on the gateway, and the agent works through it: the workload's
  // logs arrive, and the node still answers for both.
  EXPECT_TRUE(logs.wait_for("reach internal-nats: answered", 0ms));
  json in = info();
  ASSERT_TRUE(in["error"].is_null()) << in.dump();
  EXPECT_EQ(in["data"]["machines"].size(), 2u) << in.dump();
  // Each sandbox has a boot id of its own.
  auto peer_boot = peer_logs.wait_for("boot_id ", 0ms);
  auto boot = logs.wait_for("boot_id ", 0ms);
  ASSERT_TRUE(peer_boot && boot);
  EXPECT_NE(logged_value(peer_boot->second, "boot_id "), logged_value(boot->second, "boot_id "));

  const std::string node_id = node_->id();
  node_.reset();
  expect_nothing_left(node_id);
}

// "sandbox_network": "open" is the wider reach, by name: no firewall, so the host's ports answer.
TEST_F(SandboxTest, AnOpenSandboxNetworkReachesTheHostsPorts) {
  testing::HostListeners host;
  ASSERT_NE(host.port(), 0) << "cannot listen on every address of this host";
  ASSERT_OK(files_->put_file("escape", testing::kBinDir / "escape"));
  auto config = SandboxHost::get().config();
  config.sandbox_network = "open";
  start_sandboxed_node(config);
  const auto [in, fwd] = sandbox::SandboxFirewall::chains(node_->id());
  EXPECT_EQ(testing::host_firewall_rules().find(in), std::string::npos)
      << "a firewall was installed";

  Collector logs(*conn_, "$NEX.logs.default.*.escape.*");
  json req = deploy_request("escape", {{"ESCAPE_HOST_PORT", std::to_string(host.port())}});
  req["location"] = "nats://NEXCLIFILES/escape";
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto tcp = logs.wait_for("check host-tcp-gateway: ", 90s);
  ASSERT_TRUE(tcp) << "the escape workload never tried the gateway";
  EXPECT_NE(tcp->second.find("CONNECTED"), std::string::npos) << tcp->second;
  EXPECT_TRUE(logs.wait_for("reach internal-nats: answered", 30s));
  const std::string node_id = node_->id();
  node_.reset();
  expect_nothing_left(node_id);
}

TEST_F(SandboxTest, FunctionsAndHostServicesRunSandboxed) {
  ASSERT_OK(files_->put_file("visits.js", fs::path(NEX_EXAMPLES_DIR) / "hostservices/visits.js"));
  start_sandboxed_node(SandboxHost::get().config());
  json r = deploy(function_request("visits", "visits.js", {"visits.>"}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  std::string answer;
  for (int i = 0; i < 100 && answer.empty(); ++i) {
    if (auto a = conn_->request("visits.sandbox", "", 500ms)) answer = std::string(a->data());
  }
  EXPECT_EQ(answer, "visits.sandbox: 1");
  auto again = conn_->request("visits.sandbox", "", 5s);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->data(), "visits.sandbox: 2");  // the KV host service, from inside
}

// A node killed with SIGKILL leaves its sandboxes' network namespaces, addresses, firewall
// rules and cgroups;
// the next node on the same state directory releases them before it starts anything.
TEST_F(SandboxTest, ANodeStartingAfterACrashReleasesWhatTheCrashedOneHeld) {
  const fs::path config = state_dir_.string() + ".json";
  const auto c = SandboxHost::get().config();
  SandboxHost::get().write_config(config, c.rootfs_filepath);
  const std::string log = state_dir_.string() + ".log";
  auto crashing = Subprocess::spawn(
      {.argv = {(testing::kBinDir / "nex").string(), "node", "up", "-s", server().url(), "--config",
                config.string(), "--state-dir", state_dir_.string()},
       .stdout_path = log,
       .stderr_path = log});
  ASSERT_TRUE(crashing) << crashing.error().message;
  const std::string node_id = wait_for_pinged_node();
  ASSERT_FALSE(node_id.empty()) << testing::slurp(log);
  const std::string xkey = control("$NEX.PING." + node_id, "")["data"]["target_xkey"];
  json req = deploy_request_to(node_id, xkey, "echoservice",
                               {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.crash"}});
  json r = control("$NEX.DEPLOY.default." + node_id, signed_deploy(req).dump());
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  ASSERT_TRUE(echo_answers("svc.echo.crash"));

  // What the sandbox holds on the host: an address lease naming it, its kept network namespace.
  const fs::path leases = "/var/lib/cni/networks/" + SandboxHost::get().network();
  auto leased = [&] {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(leases, ec))
      if (testing::slurp(e.path()).find(id) != std::string::npos) return true;
    return false;
  };
  const fs::path netns = "/run/nex/" + node_id + "/netns/" + id;
  ASSERT_TRUE(leased());
  ASSERT_TRUE(fs::exists(netns));
  // And the firewall's rules for its link (the host's end, named in the saved CNI result).
  const json cni_result = json::parse(testing::slurp(netns.string() + ".json"));
  std::string link;
  for (const auto& i : cni_result["interfaces"])
    if (i.value("sandbox", "").empty()) link = i.value("name", "");
  ASSERT_FALSE(link.empty()) << cni_result.dump();
  const auto rules_for_link = [&] {
    return testing::host_firewall_rules().find(" " + link + " ") != std::string::npos;
  };
  ASSERT_TRUE(rules_for_link());

  ASSERT_TRUE(crashing->signal(SIGKILL));
  crashing->wait_for(5s);
  EXPECT_TRUE(leased()) << "a killed node cannot release anything (the test would prove nothing)";
  EXPECT_TRUE(rules_for_link());

  start_sandboxed_node(c);  // the same state directory: the same node
  ASSERT_EQ(node_->id(), node_id);
  EXPECT_FALSE(leased()) << "the crashed sandbox's address is still leased";
  EXPECT_FALSE(fs::exists(netns)) << "the crashed sandbox's network namespace is still kept";
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/memory/nex/" + node_id + "/" + id) ||
               fs::exists("/sys/fs/cgroup/nex/" + node_id + "/" + id))
      << "the crashed sandbox's cgroup is still there";
  EXPECT_FALSE(rules_for_link()) << "the crashed sandbox's firewall rules are still there";
  EXPECT_FALSE(fs::exists("/sys/class/net/" + link)) << "the crashed sandbox's link is still there";
  node_.reset();
  expect_nothing_left(node_id);
  fs::remove(config);
  fs::remove(log);
}

// The machine template's vcpu_count is each sandbox's CPU quota: that many CPUs' worth of time
// in every scheduling period, as the kernel enforces it for the workload's cgroup.
TEST_F(SandboxTest, TheCpuQuotaIsTheTemplatesVcpuCount) {
  auto config = SandboxHost::get().config();
  config.machine_template.vcpu_count = 2;
  start_sandboxed_node(config);
  json echo = deploy(deploy_request(
      "echoservice", {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.cpu"}}));
  ASSERT_TRUE(echo["error"].is_null()) << echo.dump();
  const std::string group = "nex/" + node_->id() + "/" + echo["data"]["id"].get<std::string>();
  const fs::path v2 = "/sys/fs/cgroup/" + group, v1 = "/sys/fs/cgroup/cpu/" + group;
  if (fs::exists(v2 / "cpu.max")) {
    EXPECT_EQ(host_file(v2 / "cpu.max"), "200000 100000");
  } else {
    ASSERT_TRUE(fs::exists(v1)) << "no cgroup of the workload's in " << v2 << " or " << v1;
    EXPECT_EQ(host_file(v1 / "cpu.cfs_period_us"), "100000");
    EXPECT_EQ(host_file(v1 / "cpu.cfs_quota_us"), "200000");
  }
}

// A deployer's NATS_URL is forwarded into the sandbox only for NATS servers the node itself uses
// or its config names: listing the node's metrics port, its internal NATS or any other loopback
// service of the host is refused, and nothing starts.
TEST_F(SandboxTest, ANatsUrlReachesOnlyTheNatsServersTheNodeUses) {
  metrics_listen_ = "127.0.0.1:0";
  auto config = SandboxHost::get().config(/*memsize_mib=*/64);
  config.sandbox_nats_ports = {server().port() + 1};  // a port the operator names
  start_sandboxed_node(config);
  const std::string metrics = node_->metrics_url();
  const std::string metrics_port =
      metrics.substr(metrics.rfind(':') + 1, metrics.find('/', 8) - metrics.rfind(':') - 1);
  for (const std::string& port :
       {metrics_port, std::to_string(node_->internal_nats_port()), std::string("22")}) {
    json r = deploy(
        deploy_request("echoservice", {{"NATS_URL", server().url() + ",nats://127.0.0.1:" + port},
                                       {"ECHO_SUBJECT", "svc.echo.listed"}}));
    ASSERT_FALSE(r["error"].is_null()) << "port " << port << " was forwarded";
    EXPECT_NE(r["error"].get<std::string>().find(
                  "environment NATS_URL: port " + port +
                  " on the host's loopback is not a NATS server this node uses"),
              std::string::npos)
        << r.dump();
  }
  EXPECT_TRUE(info()["data"]["machines"].empty()) << "a refused deploy left a workload";
  // The port the config names is taken (nothing listens there, so the service's client uses
  // the other URL: the deploy is what is checked).
  json named = deploy(deploy_request(
      "echoservice",
      {{"NATS_URL", server().url() + ",nats://127.0.0.1:" + std::to_string(server().port() + 1)},
       {"ECHO_SUBJECT", "svc.echo.named"}}));
  EXPECT_TRUE(named["error"].is_null()) << named.dump();
}

TEST_F(SandboxTest, AMissingRootFilesystemIsAClearErrorAndStartsNothing) {
  auto config = SandboxHost::get().config();
  config.rootfs_filepath = state_dir_ / "no-such-rootfs.ext4";
  auto n = node::Node::start({.config = config,
                              .control = {.urls = {server().url()}},
                              .state_dir = state_dir_,
                              .version = "test"});
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().message.find("rootfs_filepath"), std::string::npos) << n.error().message;
  EXPECT_NE(n.error().message.find("nex rootfs -o"), std::string::npos) << n.error().message;
}

}  // namespace
}  // namespace nex
