// The namespace sandbox, from the inside: a workload that tries every way out (host files,
// host processes, the control NATS, another workload's subjects, mount, ptrace, new
// namespaces, root, the clock, a fork bomb, memory past memsize_mib, filling /tmp) finds each
// one denied or contained, while a service beside it and the node keep working; and the node
// leaves nothing behind (addresses, links, cgroups, mounts) when it stops.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "core/subprocess.h"

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
  json req = deploy_request("escape", {{"ESCAPE_STATE_DIR", state_dir_.string()},
                                       {"ESCAPE_CONTROL_PORT", port},
                                       {"ESCAPE_OTHER_ID", echo["data"]["id"]}});
  req["location"] = "nats://NEXCLIFILES/escape";
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  ASSERT_TRUE(logs.wait_for("escape attempts done", 90s)) << "the escape workload never finished";
  for (const char* check :
       {"host-shadow", "node-state", "agent-environ", "host-processes", "control-nats-loopback",
        "control-nats-gateway", "other-workload", "inherited-descriptors", "mount", "ptrace",
        "unshare", "setuid", "clock", "fill-tmp", "fork-bomb", "memory"}) {
    auto line = logs.wait_for(std::string("check ") + check + ": ", 1s);
    ASSERT_TRUE(line) << "no report for " << check;
    EXPECT_NE(line->second.find("contained"), std::string::npos) << line->second;
  }
  EXPECT_FALSE(logs.wait_for("ESCAPED", 0ms)) << logs.wait_for("ESCAPED", 0ms)->second;
  EXPECT_TRUE(logs.wait_for("escape attempts done: 0 escaped", 0ms));
  auto bomb = logs.wait_for("fork bomb made", 0ms);
  ASSERT_TRUE(bomb);
  std::smatch m;
  const std::string bomb_text = json::parse(bomb->second)["text"];
  ASSERT_TRUE(std::regex_search(bomb_text, m, std::regex("made ([0-9]+) processes")));
  EXPECT_LT(std::stoi(m[1]), 512) << "the pids limit did not hold";

  // Everything else keeps working: the neighbour answers, the node answers, the escapee runs.
  EXPECT_TRUE(echo_answers("svc.echo.sandboxed"));
  json in = info();
  ASSERT_TRUE(in["error"].is_null()) << in.dump();
  EXPECT_EQ(in["data"]["machines"].size(), 2u) << in.dump();

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

// A node killed with SIGKILL leaves its sandboxes' network namespaces, addresses and cgroups;
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

  ASSERT_TRUE(crashing->signal(SIGKILL));
  crashing->wait_for(5s);
  EXPECT_TRUE(leased()) << "a killed node cannot release anything (the test would prove nothing)";

  start_sandboxed_node(c);  // the same state directory: the same node
  ASSERT_EQ(node_->id(), node_id);
  EXPECT_FALSE(leased()) << "the crashed sandbox's address is still leased";
  EXPECT_FALSE(fs::exists(netns)) << "the crashed sandbox's network namespace is still kept";
  EXPECT_FALSE(fs::exists("/sys/fs/cgroup/memory/nex/" + node_id + "/" + id) ||
               fs::exists("/sys/fs/cgroup/nex/" + node_id + "/" + id))
      << "the crashed sandbox's cgroup is still there";
  node_.reset();
  expect_nothing_left(node_id);
  fs::remove(config);
  fs::remove(log);
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
