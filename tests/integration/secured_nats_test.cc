// Seed 003 end to end on operator-mode NATS: nats-server trusts an operator, the account "Exp" and
// its users are JWTs made by the test, nothing connects without credentials. The node and the CLI
// log in through `nats` contexts holding .creds files (`nex --context ExpNode node up`,
// `nex --context ExpAdmin devrun ... NATS_JWT=...`), and the echo service logs in with its own
// user JWT.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "core/subprocess.h"
#include "nats/connection.h"
#include "nats/local_server.h"
#include "node/node_config.h"
#include "node/trigger_route.h"
#include "testing/cli.h"
#include "testing/nats_server_fixture.h"
#include "testing/operator_chain.h"
#include "testing/sandbox_host.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ::nex::testing::slurp;
using nlohmann::json;

using testing::CliResult;

class SecuredNats : public ::testing::Test {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("nex-secured-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::create_directories(home() / ".config/nats/context");
    fs::copy_file(fs::path(NEX_BINARY).parent_path() / "echoservice", home() / "echoservice");

    fs::copy_file(fs::path(NEX_SOURCE_DIR) / "examples/echofunction/echo.js", home() / "echo.js");
    auto exp = chain_.account("Exp", /*jetstream=*/true);
    // The account's seed, for nodes that sign their functions' trigger users.
    account_key_file_ = dir_ / "Exp.nk";
    std::ofstream(account_key_file_) << exp.key.seed() << "\n";
    std::ofstream(dir_ / "server.conf") << chain_.server_config();
    auto s = nats::LocalNatsServer::start({.store_dir = dir_ / "js",
                                           .work_dir = dir_ / "server",
                                           .config_file = dir_ / "server.conf"});
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::make_unique<nats::LocalNatsServer>(std::move(*s));

    // As `nsc` and `nats context add NAME --creds FILE` set them up in seed 003.
    add_context("ExpNode", exp.user("ExpNode"));
    admin_creds_ = add_context("ExpAdmin", exp.user("ExpAdmin"));
    // The service's user may only answer on svc.echo and service discovery, and logs in with its
    // JWT alone, as seed 003 passes NATS_JWT.
    echo_jwt_ = exp.user("EchoService",
                         {{"sub", {{"allow", {"svc.echo", "$SRV.>"}}}},
                          {"pub", {{"deny", {">"}}}},
                          {"resp", {{"max", 1}}}},
                         /*bearer=*/true)
                    .jwt;
  }

  void TearDown() override {
    stop_node();
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path home() const { return dir_ / "home"; }

  fs::path add_context(const std::string& name, const testing::NatsUser& user) {
    const fs::path creds = dir_ / (name + ".creds");
    user.write_creds(creds);
    std::ofstream(home() / ".config/nats/context" / (name + ".json"))
        << json{{"url", server_->url()}, {"creds", creds.string()}}.dump(2);
    return creds;
  }

  // `nex ARGS...` as the user types it: from home, with nothing but HOME in the environment.
  testing::CliEnvironment user() const {
    return {
        .cwd = home(), .env = {"HOME=" + home().string(), "PATH=/usr/bin:/bin"}, .clear_env = true};
  }
  Subprocess spawn(const std::vector<std::string>& args, const fs::path& out) {
    auto p = testing::spawn_nex(args, user(), out);
    EXPECT_TRUE(p) << p.error().message;
    return std::move(*p);
  }
  CliResult nex(const std::vector<std::string>& args) {
    static int n = 0;
    return testing::run_nex(args, user(), dir_ / ("cli-" + std::to_string(++n) + ".txt"));
  }

  // `sudo -E nex --context ExpNode node up`, with the process driver unless `config` says
  // otherwise; waits until it serves.
  void start_node(json config = {{"no_sandbox", true}}) {
    const fs::path conf = dir_ / "node.json";
    std::ofstream(conf) << config.dump();
    static int n = 0;
    node_log_ = dir_ / ("node-" + std::to_string(++n) + ".log");
    node_ = std::make_unique<Subprocess>(
        spawn({"--context", "ExpNode", "node", "up", "--name", "exp1", "--config", conf.string(),
               "--state-dir", (dir_ / "node").string()},
              node_log_));
    for (int i = 0; i < 300 && slurp(node_log_).find("awaiting commands") == std::string::npos; ++i)
      std::this_thread::sleep_for(50ms);
    ASSERT_NE(slurp(node_log_).find("awaiting commands"), std::string::npos) << slurp(node_log_);
  }
  void stop_node(int sig = SIGTERM) {
    if (!node_) return;
    (void)node_->signal(sig);
    node_->wait_for(20s);
    node_.reset();
  }

  // The admin's own connection, as `nats --context ExpAdmin req svc.echo` makes it.
  bool echo_answers() {
    auto conn = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
    if (!conn) return false;
    for (int i = 0; i < 250; ++i) {
      auto r = conn->request("svc.echo", "hello", 500ms);
      if (r && r->data() == "hello") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  fs::path dir_;
  testing::OperatorChain chain_;
  std::unique_ptr<nats::LocalNatsServer> server_;
  std::string admin_creds_;
  std::string echo_jwt_;
  std::unique_ptr<Subprocess> node_;
  fs::path node_log_;
  fs::path account_key_file_;

  // Deploys the seeds' echo.js on fn.secure and asks it, as the admin; the node says which way
  // its triggers take.
  void expect_function_answers_taking(const std::string& route) {
    auto devrun =
        nex({"--context", "ExpAdmin", "devrun", "./echo.js", "--trigger_subject=fn.secure"});
    ASSERT_EQ(devrun.code, 0) << devrun.out;
    auto conn = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
    ASSERT_TRUE(conn) << conn.error().message;
    auto r = conn->request("fn.secure", "heya", 5s);
    ASSERT_TRUE(r) << r.error().message << "\n" << slurp(node_log_);
    EXPECT_EQ(r->data(), "heya");
    EXPECT_NE(slurp(node_log_).find("Function echo " + route), std::string::npos)
        << slurp(node_log_);
  }
};

TEST_F(SecuredNats, TheSeedWalkthroughRunsWithCredsEverywhere) {
  // Nothing gets in without credentials: an anonymous `nex node ls` is turned away, saying so.
  auto anonymous = nex({"-s", server_->url(), "node", "ls"});
  EXPECT_NE(anonymous.code, 0);
  EXPECT_NE(anonymous.out.find("uthorization"), std::string::npos) << anonymous.out;

  ASSERT_NO_FATAL_FAILURE(start_node());
  auto ls = nex({"--context", "ExpAdmin", "node", "ls"});
  ASSERT_EQ(ls.code, 0) << ls.out;
  EXPECT_NE(ls.out.find("exp1"), std::string::npos) << ls.out;

  // seed 003: `nex --context ExpAdmin devrun $ECHO_BIN NATS_URL=... NATS_JWT=$NATS_JWT`
  auto devrun = nex({"--context", "ExpAdmin", "devrun", "./echoservice",
                     "NATS_URL=" + server_->url(), "NATS_JWT=" + echo_jwt_});
  ASSERT_EQ(devrun.code, 0) << devrun.out;
  EXPECT_NE(devrun.out.find("🚀 Workload 'echoservice' accepted"), std::string::npos) << devrun.out;
  ASSERT_TRUE(echo_answers()) << "svc.echo got no answer; node log:\n" << slurp(node_log_);
  // The service's JWT travelled sealed and is in no log.
  EXPECT_EQ(slurp(node_log_).find(echo_jwt_), std::string::npos);

  // Durable commands go through JetStream with the same credentials.
  auto hello = nex({"--context", "ExpAdmin", "cmd", "send", "exp1", "--method", "hello"});
  EXPECT_EQ(hello.code, 0) << hello.out;

  // The node's state lives in the account's KV: killed and started again, it brings the service
  // back, logged in with its JWT as before.
  stop_node(SIGKILL);
  {
    auto conn = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
    ASSERT_TRUE(conn) << conn.error().message;
    for (int i = 0; i < 250 && conn->request("svc.echo", "x", 100ms); ++i)
      std::this_thread::sleep_for(20ms);  // until the killed node's service is gone
  }
  ASSERT_NO_FATAL_FAILURE(start_node());
  EXPECT_TRUE(echo_answers()) << "the restored service did not answer; node log:\n"
                              << slurp(node_log_);
}

TEST_F(SecuredNats, AServiceWithoutItsJwtCannotLogInAndItsLogSaysWhy) {
  ASSERT_NO_FATAL_FAILURE(start_node());
  const fs::path logs_out = dir_ / "logs.txt";
  Subprocess logs = spawn({"--context", "ExpAdmin", "logs"}, logs_out);
  for (int i = 0; i < 200 && slurp(logs_out).find("Following") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  ASSERT_NE(slurp(logs_out).find("Following"), std::string::npos) << slurp(logs_out);

  // The node runs it, but the server refuses its anonymous connection.
  auto devrun =
      nex({"--context", "ExpAdmin", "devrun", "./echoservice", "NATS_URL=" + server_->url()});
  ASSERT_EQ(devrun.code, 0) << devrun.out;
  bool said = false;
  for (int i = 0; i < 250 && !said; ++i) {
    said = slurp(logs_out).find("Authorization Violation") != std::string::npos;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(said) << slurp(logs_out);
  (void)logs.signal(SIGINT);
  logs.wait_for(5s);
}

TEST_F(SecuredNats, WithoutASigningKeyANodeWithCredentialsRelaysTriggers) {
  ASSERT_NO_FATAL_FAILURE(start_node());
  expect_function_answers_taking("has its triggers relayed by the node");
}

TEST_F(SecuredNats, WithTheAccountKeyAFunctionTakesItsTriggersDirectlyAsAUserOfItsOwn) {
  ASSERT_NO_FATAL_FAILURE(
      start_node({{"no_sandbox", true}, {"trigger_signing_key_file", account_key_file_}}));
  expect_function_answers_taking("takes its triggers directly, as a user the node signed");
}

TEST_F(SecuredNats, ASandboxedFunctionTakesItsTriggersDirectlyToo) {
  NEX_REQUIRE_NAMESPACE_SANDBOX();
  const auto& host = testing::SandboxHost::get();
  const fs::path conf = dir_ / "sandboxed.json";
  host.write_config(conf, host.dir() / "rootfs");
  json config = json::parse(slurp(conf));
  config["trigger_signing_key_file"] = account_key_file_;
  ASSERT_NO_FATAL_FAILURE(start_node(config));
  ASSERT_NE(slurp(node_log_).find("Sandbox driver: namespace"), std::string::npos)
      << slurp(node_log_);
  expect_function_answers_taking("takes its triggers directly, as a user the node signed");
}

TEST_F(SecuredNats, TheUserANodeSignsMayTakeItsTriggersAndAnswerThemAndNothingElse) {
  // As the node mints it for a function on fn.allowed, with the node's own creds.
  node::NodeConfig config;
  config.trigger_signing_key_file = account_key_file_;
  auto creds = node::TriggerCredentials::load(
      config, {.urls = {server_->url()}, .creds_file = (dir_ / "ExpNode.creds").string()});
  ASSERT_TRUE(creds && *creds) << (creds ? "no key" : creds.error().message);
  const auto user = (*creds)->mint("w1", {"fn.allowed"}, 10s);
  std::atomic<int> violations{0};
  auto minted = nats::Connection::connect({.urls = {server_->url()},
                                           .nkey_seed = user.seed,
                                           .user_jwt = user.jwt,
                                           .on_async_error = [&](const Error&) { violations++; }});
  ASSERT_TRUE(minted) << minted.error().message;
  auto admin = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
  ASSERT_TRUE(admin);

  ASSERT_OK_AND_ASSIGN(trigger, minted->subscribe_sync("fn.allowed", "fn.allowed"));
  ASSERT_OK_AND_ASSIGN(other, minted->subscribe_sync("fn.other"));
  ASSERT_OK(minted->flush());
  // A request on its trigger subject reaches it, and its answer reaches the caller.
  std::thread answer([&] {
    if (auto m = trigger.next(5s)) (void)minted->publish(m->reply(), "answered");
  });
  auto r = admin->request("fn.allowed", "q", 5s);
  answer.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->data(), "answered");
  // Anything else is refused by the server: no other subscription, no other publish.
  ASSERT_OK(admin->publish("fn.other", "x"));
  ASSERT_OK(minted->publish("fn.allowed", "from the function"));
  ASSERT_OK(admin->flush());
  EXPECT_FALSE(other.next(500ms)) << "it received on a subject it may not subscribe to";
  EXPECT_FALSE(trigger.next(200ms)) << "it published where it may only answer";
  EXPECT_GE(violations.load(), 1);
}

TEST_F(SecuredNats, ASigningKeyThatIsNotAnAccountKeyStopsTheNodeNamingTheField) {
  const fs::path bad = dir_ / "user.nk";
  std::ofstream(bad) << crypto::KeyPair::create(crypto::KeyType::kUser)->seed() << "\n";
  const fs::path conf = dir_ / "bad.json";
  std::ofstream(conf) << json{{"no_sandbox", true}, {"trigger_signing_key_file", bad}}.dump();
  auto r = nex({"--context", "ExpNode", "node", "up", "--config", conf.string(), "--state-dir",
                (dir_ / "bad-node").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("trigger_signing_key_file " + bad.string() +
                       ": must hold an account seed (SA...)"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace nex
