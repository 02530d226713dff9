// A workload's agent that dies (killed with SIGKILL, say) is noticed at once: the node reaps it
// (no zombie), says so in its log, in the workload's log and in an event, and then restarts the
// workload when it is essential or stops it otherwise, with the agent's exit status in INFO.
// With the process driver and in the namespace sandbox, on a node run as `nex node up`.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/subprocess.h"
#include "testing/node_fixture.h"
#include "testing/sandbox_host.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;
using testing::Collector;
using testing::SandboxHost;

// The pid of workload `id`'s agent: the process whose environment names it (both drivers hand
// the agent its workload id there). 0: none.
pid_t agent_pid(const std::string& id) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    const std::string env = testing::slurp(e.path() / "environ");
    if (env.find(std::string("NEX_WORKLOADID=") + id + '\0') != std::string::npos)
      return std::stoi(name);
  }
  return 0;
}

// The children of `parent` that died and were never waited for.
int zombie_children(pid_t parent) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    const std::string stat = testing::slurp(e.path() / "stat");
    const size_t close = stat.rfind(')');
    if (close == std::string::npos || stat.size() < close + 4) continue;
    if (stat[close + 2] == 'Z' && std::atoi(stat.c_str() + close + 4) == parent) ++n;
  }
  return n;
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds t) {
  const auto deadline = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

class AgentExitTest : public testing::NodeTest {
 protected:
  void TearDown() override {
    if (node_process_) node_process_->terminate(15s);
    std::error_code ec;
    fs::remove(config_, ec);
    fs::remove(log_, ec);
    NodeTest::TearDown();
  }
  // `nex node up` with `config` (JSON), its log in log_; the node's id and xkey.
  void start_node_process(const json& config) {
    config_ = state_dir_.string() + ".json";
    log_ = state_dir_.string() + ".log";
    std::ofstream(config_) << config.dump();
    auto p = Subprocess::spawn(
        {.argv = {(testing::kBinDir / "nex").string(), "node", "up", "-s", server().url(),
                  "--config", config_.string(), "--state-dir", state_dir_.string()},
         .stdout_path = log_.string(),
         .stderr_path = log_.string()});
    ASSERT_TRUE(p) << p.error().message;
    node_process_ = std::move(*p);
    node_id_ = wait_for_pinged_node();
    ASSERT_FALSE(node_id_.empty()) << testing::slurp(log_);
    xkey_ = control("$NEX.PING." + node_id_, "")["data"]["target_xkey"];
  }
  json deploy_echo(const std::string& name, const std::string& subject, bool essential) {
    json req = deploy_request_to(node_id_, xkey_, name,
                                 {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", subject}});
    req["essential"] = essential;
    return control("$NEX.DEPLOY.default." + node_id_, signed_deploy(req).dump());
  }
  json machines() { return control("$NEX.INFO.default." + node_id_, "")["data"]["machines"]; }
  std::string node_log() { return testing::slurp(log_); }

  // Kills workload `id`'s agent with SIGKILL; expects it reaped at once, and said so.
  void kill_agent_and_expect_it_noticed(const std::string& id, Collector& events) {
    const pid_t agent = agent_pid(id);
    ASSERT_GT(agent, 0) << "no agent for workload " << id;
    ASSERT_EQ(::kill(agent, SIGKILL), 0);
    auto died = events.wait_for("workload_agent_exited", 5s);
    ASSERT_TRUE(died) << "no event told that the agent died\n" << node_log();
    json d = json::parse(died->second)["data"];
    EXPECT_EQ(d["code"], 128 + SIGKILL) << d.dump();
    EXPECT_NE(d["message"].get<std::string>().find("killed by signal 9 (SIGKILL)"),
              std::string::npos)
        << d.dump();
    EXPECT_TRUE(eventually([&] { return zombie_children(node_process_->pid()) == 0; }, 2s))
        << "the dead agent was left a zombie";
    EXPECT_TRUE(eventually(
        [&] { return node_log().find("killed by signal 9 (SIGKILL)") != std::string::npos; }, 2s))
        << node_log();
  }

  // After its agent was killed, workload `id` (`name`) is undeployed with the agent's status,
  // and INFO keeps what happened to it.
  void expect_stopped_for_good(const std::string& id, const std::string& name, Collector& events) {
    auto undeployed = events.wait_for("workload_undeployed", 5s);
    ASSERT_TRUE(undeployed) << node_log();
    json d = json::parse(undeployed->second)["data"];
    EXPECT_EQ(d["workload_name"], name);
    EXPECT_EQ(d["code"], 128 + SIGKILL);
    EXPECT_EQ(machines().size(), 0u);
    json ended = control("$NEX.INFO.default." + node_id_, "")["data"]["ended"];
    ASSERT_EQ(ended.size(), 1u) << ended.dump();
    EXPECT_EQ(ended[0]["id"], id);
    EXPECT_EQ(ended[0]["name"], name);
    EXPECT_NE(ended[0]["exit"].get<std::string>().find("killed by signal 9"), std::string::npos);
  }

  // A service's agent killed: the service is stopped, and a user watching sees why.
  void a_killed_agent_stops_its_service() {
    Collector events(*conn_, "$NEX.events.default.*");
    Collector logs(*conn_, "$NEX.logs.default.*.victim.*");
    json r = deploy_echo("victim", "svc.echo.victim", /*essential=*/false);
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
    const std::string id = r["data"]["id"];
    ASSERT_TRUE(echo_answers("svc.echo.victim"));
    kill_agent_and_expect_it_noticed(id, events);
    expect_stopped_for_good(id, "victim", events);
    EXPECT_TRUE(logs.wait_for("killed by signal 9 (SIGKILL)", 2s)) << "nothing in its log";
    EXPECT_TRUE(nothing_answers("svc.echo.victim"));
  }

  // An essential service's agent killed: the service comes back, in a new agent.
  void a_killed_agent_of_an_essential_service_is_restarted() {
    Collector events(*conn_, "$NEX.events.default.*");
    json r = deploy_echo("survivor", "svc.echo.survivor", /*essential=*/true);
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
    const std::string id = r["data"]["id"];
    ASSERT_TRUE(echo_answers("svc.echo.survivor"));
    kill_agent_and_expect_it_noticed(id, events);
    auto back = events.wait_for("\"restarted\":true", 20s);
    ASSERT_TRUE(back) << node_log();
    EXPECT_TRUE(echo_answers("svc.echo.survivor", 10s)) << "the essential service did not return";
    json m = machines();
    ASSERT_EQ(m.size(), 1u) << m.dump();
    EXPECT_EQ(m[0]["workload"]["name"], "survivor");
    EXPECT_EQ(m[0]["restarts"], 1) << m.dump();
    EXPECT_NE(m[0]["last_exit"].get<std::string>().find("killed by signal 9"), std::string::npos)
        << m.dump();
    EXPECT_TRUE(eventually([&] { return machines()[0]["healthy"] == true; }, 10s)) << machines();
    // The node logs the restart once the new agent took it, just after announcing it.
    EXPECT_TRUE(
        eventually([&] { return node_log().find("restarted as") != std::string::npos; }, 5s))
        << node_log();
    // Its deployer stops it by the id it now has.
    const std::string now_id = m[0]["id"];
    json stopped = control("$NEX.STOP.default." + node_id_,
                           stop_request(node_id_, now_id, "survivor", "default", issuer_).dump());
    EXPECT_TRUE(stopped["error"].is_null()) << stopped.dump();
  }

  // A function's agent killed: the function is stopped, its callers are not left waiting, and
  // its trigger subject goes quiet.
  void a_killed_agent_stops_its_function() {
    ASSERT_OK(files_->put_file("echo.js", fs::path(NEX_EXAMPLES_DIR) / "echofunction/echo.js"));
    Collector events(*conn_, "$NEX.events.default.*");
    json req = deploy_request_to(node_id_, xkey_, "fnvictim");
    req["type"] = "v8";
    req["location"] = "nats://NEXCLIFILES/echo.js";
    req["trigger_subjects"] = {"fn.victim"};
    json r = control("$NEX.DEPLOY.default." + node_id_, signed_deploy(req).dump());
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
    const std::string id = r["data"]["id"];
    ASSERT_TRUE(eventually(
        [&] {
          auto a = conn_->request("fn.victim", "hello", 500ms);
          return a && a->data() == "hello";
        },
        10s))
        << "the function never answered\n"
        << node_log();
    kill_agent_and_expect_it_noticed(id, events);
    expect_stopped_for_good(id, "fnvictim", events);
    // A caller now hears at once that nothing answers, rather than waiting for a dead agent.
    EXPECT_TRUE(nothing_answers("fn.victim"));
  }

  std::optional<Subprocess> node_process_;
  fs::path config_, log_;
  std::string node_id_, xkey_;
};

TEST_F(AgentExitTest, AKilledAgentStopsItsServiceAndSaysWhy) {
  start_node_process({{"no_sandbox", true}});
  a_killed_agent_stops_its_service();
}

TEST_F(AgentExitTest, AKilledAgentOfAnEssentialServiceIsRestarted) {
  start_node_process({{"no_sandbox", true}});
  a_killed_agent_of_an_essential_service_is_restarted();
}

TEST_F(AgentExitTest, AKilledAgentStopsItsFunctionAndSaysWhy) {
  start_node_process({{"no_sandbox", true}});
  a_killed_agent_stops_its_function();
}

class SandboxedAgentExitTest : public AgentExitTest {
 protected:
  void SetUp() override {
    AgentExitTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    NEX_REQUIRE_NAMESPACE_SANDBOX();
    const auto c = SandboxHost::get().config();
    start_node_process(
        {{"rootfs_filepath", c.rootfs_filepath},
         {"cni", {{"network_name", c.cni.network_name}, {"conf_dir", c.cni.conf_dir}}}});
  }
};

TEST_F(SandboxedAgentExitTest, AKilledAgentStopsItsServiceAndSaysWhy) {
  a_killed_agent_stops_its_service();
}

TEST_F(SandboxedAgentExitTest, AKilledAgentStopsItsFunctionAndSaysWhy) {
  a_killed_agent_stops_its_function();
}

TEST_F(SandboxedAgentExitTest, AKilledAgentOfAnEssentialServiceIsRestarted) {
  a_killed_agent_of_an_essential_service_is_restarted();
}

}  // namespace
}  // namespace nex
