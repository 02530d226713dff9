// Nex's secured-NATS walkthrough end to end on operator-mode NATS: nats-server trusts an operator,
// the account "Exp" and its users are JWTs made by the test, nothing connects without credentials.
// The node and the CLI log in through `nats` contexts holding .creds files (`nex --context ExpNode
// node up`, `nex --context ExpAdmin devrun ... NATS_JWT=...`), and the echo service logs in with
// its own user JWT. Then the same on a nats-server with users and passwords, where a node has
// nothing to sign its functions' logins with.
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
#include "node/host_services/service.h"
#include "node/node_config.h"
#include "testing/cli.h"
#include "testing/nats_server_fixture.h"
#include "testing/operator_chain.h"
#include "testing/sandbox_host.h"
#include "triggers/route.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ::nex::testing::slurp;
using nlohmann::json;

using testing::CliResult;

// A nats-server that wants credentials, configured by `server_config`, and the CLI as its users
// run it (through `nats` contexts), the node among them.
class SecuredServerTest : public ::testing::Test {
 protected:
  void start_server(const std::string& server_config) {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("nex-secured-" + std::to_string(getpid()) + "-" + std::to_string(++n));
    fs::create_directories(home() / ".config/nats/context");
    fs::copy_file(fs::path(NEX_BINARY).parent_path() / "echoservice", home() / "echoservice");
    fs::copy_file(fs::path(NEX_SOURCE_DIR) / "examples/echofunction/echo.js", home() / "echo.js");
    std::ofstream(dir_ / "server.conf") << server_config;
    auto s = nats::LocalNatsServer::start({.store_dir = dir_ / "js",
                                           .work_dir = dir_ / "server",
                                           .config_file = dir_ / "server.conf"});
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::make_unique<nats::LocalNatsServer>(std::move(*s));
  }

  void TearDown() override {
    stop_node();
    server_.reset();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  fs::path home() const { return dir_ / "home"; }

  // `nats context add NAME --server URL` with `login` (creds, user and password, ...).
  void add_context(const std::string& name, json login) {
    login["url"] = server_->url();
    std::ofstream(home() / ".config/nats/context" / (name + ".json")) << login.dump(2);
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

  // `sudo -E nex --context CONTEXT node up`, with the process driver unless `config` says
  // otherwise; waits until it serves.
  void start_node(const std::string& context, json config = {{"no_sandbox", true}}) {
    const fs::path conf = dir_ / "node.json";
    std::ofstream(conf) << config.dump();
    static int n = 0;
    node_log_ = dir_ / ("node-" + std::to_string(++n) + ".log");
    node_ = std::make_unique<Subprocess>(
        spawn({"--context", context, "node", "up", "--name", "exp1", "--config", conf.string(),
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

  // Asks `subject` until something answers (a deploy is running when its agent has subscribed);
  // the answer, or nullopt after about two minutes.
  static std::optional<std::string> ask(const nats::Connection& conn, const std::string& subject,
                                        const std::string& payload) {
    for (int i = 0; i < 250; ++i) {
      if (auto r = conn.request(subject, payload, 500ms)) return std::string(r->data());
      std::this_thread::sleep_for(20ms);
    }
    return std::nullopt;
  }

  fs::path dir_;
  std::unique_ptr<nats::LocalNatsServer> server_;
  std::unique_ptr<Subprocess> node_;
  fs::path node_log_;
};

class SecuredNats : public SecuredServerTest {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    auto exp = chain_.account("Exp", /*jetstream=*/true);
    ASSERT_NO_FATAL_FAILURE(start_server(chain_.server_config()));
    // The account's seed, for nodes that sign their functions' trigger users.
    account_key_file_ = dir_ / "Exp.nk";
    std::ofstream(account_key_file_) << exp.key.seed() << "\n";

    // As `nsc` and `nats context add NAME --creds FILE` set them up in the secured-NATS
    // walkthrough.
    add_creds_context("ExpNode", exp.user("ExpNode"));
    admin_creds_ = add_creds_context("ExpAdmin", exp.user("ExpAdmin"));
    // The service's user may only answer on svc.echo and service discovery, and logs in with its
    // JWT alone, as the secured-NATS walkthrough passes NATS_JWT.
    echo_jwt_ = exp.user("EchoService",
                         {{"sub", {{"allow", {"svc.echo", "$SRV.>"}}}},
                          {"pub", {{"deny", {">"}}}},
                          {"resp", {{"max", 1}}}},
                         /*bearer=*/true)
                    .jwt;
  }

  fs::path add_creds_context(const std::string& name, const testing::NatsUser& user) {
    const fs::path creds = dir_ / (name + ".creds");
    user.write_creds(creds);
    add_context(name, {{"creds", creds.string()}});
    return creds;
  }
  void start_node(json config = {{"no_sandbox", true}}) {
    SecuredServerTest::start_node("ExpNode", std::move(config));
  }

  // The admin's own connection, as `nats --context ExpAdmin req svc.echo` makes it.
  bool echo_answers() {
    auto conn = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
    return conn && ask(*conn, "svc.echo", "hello") == "hello";
  }

  testing::OperatorChain chain_;
  std::string admin_creds_;
  std::string echo_jwt_;
  fs::path account_key_file_;

  // Deploys Nex's echo.js on fn.secure and asks it, as the admin; the node says which way
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

  // the secured-NATS walkthrough: `nex --context ExpAdmin devrun $ECHO_BIN NATS_URL=...
  // NATS_JWT=$NATS_JWT`
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
    // The killed node's service must be gone first: an orphan still answering would pass for
    // the restored one.
    auto conn = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
    ASSERT_TRUE(conn) << conn.error().message;
    bool gone = false;
    for (int i = 0; i < 250 && !gone; ++i) {
      auto r = conn->request("svc.echo", "x", 100ms);
      gone = !r && r.error().code == ErrorCode::kNoResponders;
      if (!gone) std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(gone) << "the killed node's echo service still answers";
  }
  ASSERT_NO_FATAL_FAILURE(start_node());
  EXPECT_TRUE(echo_answers()) << "the restored service did not answer; node log:\n"
                              << slurp(node_log_);
  // Said once the deploy returned, which can be just after the service first answers.
  for (int i = 0;
       i < 250 && slurp(node_log_).find("Restored workload echoservice") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_NE(slurp(node_log_).find("Restored workload echoservice"), std::string::npos)
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
  auto creds = triggers::TriggerCredentials::load(
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

// In operator mode a workload's messaging goes out as a user the node signs for it, which the
// server holds off every reserved subject, whatever the node's policy would have let through;
// every host service keeps working.
TEST_F(SecuredNats, InOperatorModeMessagingActsAsAUserHeldToTheWorkloadsOwnReach) {
  fs::copy_file(fs::path(NEX_SOURCE_DIR) / "tests/fixtures/js/host_services.js", home() / "hs.js");
  ASSERT_NO_FATAL_FAILURE(
      start_node({{"no_sandbox", true}, {"trigger_signing_key_file", account_key_file_}}));
  EXPECT_NE(slurp(node_log_).find("Host services send each workload's messaging as a NATS user"),
            std::string::npos);
  auto devrun = nex({"--context", "ExpAdmin", "devrun", "./hs.js", "--trigger_subject=hs.secure"});
  ASSERT_EQ(devrun.code, 0) << devrun.out;
  auto admin = nats::Connection::connect({.urls = {server_->url()}, .creds_file = admin_creds_});
  ASSERT_TRUE(admin);
  auto call = [&](const json& op) -> json {
    auto r = ask(*admin, "hs.secure", op.dump());
    return r ? json::parse(*r, nullptr, false) : json{{"error", "no answer"}};
  };
  EXPECT_EQ(call({{"op", "kv.set"}, {"key", "k"}, {"value", "v"}})["success"], true)
      << slurp(node_log_);
  EXPECT_EQ(call({{"op", "kv.get"}, {"key", "k"}})["value"], "v");
  EXPECT_EQ(call({{"op", "kv.keys"}}), json::array({"k"}));
  EXPECT_EQ(call({{"op", "obj.put"}, {"name", "o"}, {"value", "ov"}})["size"], 2);
  EXPECT_EQ(call({{"op", "obj.get"}, {"name", "o"}})["value"], "ov");
  EXPECT_EQ(call({{"op", "pub"}, {"subject", "news.today"}, {"value", "x"}})["published"],
            "news.today");

  // The user as the node signs it: the server refuses what it may not do.
  node::NodeConfig config;
  config.trigger_signing_key_file = account_key_file_;
  auto creds = triggers::TriggerCredentials::load(
      config, {.urls = {server_->url()}, .creds_file = (dir_ / "ExpNode.creds").string()});
  ASSERT_TRUE(creds && *creds);
  std::atomic<int> violations{0};
  auto login = [&](const json& permissions, const std::string& inbox) {
    auto user = (*creds)->sign("probe", permissions);
    return nats::Connection::connect({.urls = {server_->url()},
                                      .nkey_seed = user.seed,
                                      .user_jwt = user.jwt,
                                      .inbox_prefix = inbox,
                                      .on_async_error = [&](const Error&) { violations++; }});
  };
  ASSERT_OK_AND_ASSIGN(records, admin->subscribe_sync("$KV.NEX_NODES.>"));
  ASSERT_OK_AND_ASSIGN(news, admin->subscribe_sync("news.>"));
  ASSERT_OK(admin->flush());
  node::host_services::MessagingSettings settings;
  auto messaging = login(node::host_services::messaging_permissions(settings, "_INBOX.probe.m"),
                         "_INBOX.probe.m");
  ASSERT_TRUE(messaging) << messaging.error().message;
  ASSERT_OK(messaging->publish("$KV.NEX_NODES.exp1", "forged"));
  ASSERT_OK(messaging->publish("_INBOX.someone", "forged"));
  ASSERT_OK(messaging->publish("news.today", "allowed"));
  ASSERT_OK(messaging->flush());
  // The server handles one client's messages in order, and delivers to the admin connection in
  // order: once the allowed one is here, a forged one that got through would be here too.
  EXPECT_TRUE(news.next(5s)) << "an allowed subject did not go out";
  EXPECT_EQ(records.pending(), 0u) << "the messaging user wrote the node directory";
  for (int i = 0; i < 250 && violations.load() < 2; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_GE(violations.load(), 2);
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

// Users and passwords (nats-server's authorization block): a node has nothing to sign logins with,
// so it relays its functions' triggers, unless a function's deployer gives it a login of its own in
// its sealed environment, as the secured-NATS walkthrough gives the echo service its NATS_JWT.
class UserPasswordNats : public SecuredServerTest {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    ASSERT_NO_FATAL_FAILURE(start_server(R"(authorization {
  users = [
    {user: node, password: "node-pw-1"}
    {user: admin, password: "admin-pw-2"}
    {user: echo, password: "echo-pw-3",
     permissions: {subscribe: ["svc.echo", "$SRV.>"], publish: {deny: ">"}, allow_responses: true}}
    {user: fn, password: "fn-pw-4",
     permissions: {subscribe: ["fn.own"], publish: {deny: ">"}, allow_responses: true}}
  ]
}
)"));
    add_context("node", {{"user", "node"}, {"password", "node-pw-1"}});
    add_context("admin", {{"user", "admin"}, {"password", "admin-pw-2"}});
    admin_ = nats::Connection::connect(
        {.urls = {server_->url()}, .user = "admin", .password = "admin-pw-2"});
    ASSERT_TRUE(admin_) << admin_.error().message;
  }

  // NATS_URL with a login in it, as a deployer writes it.
  std::string url_with(const std::string& login) const {
    return "nats://" + login + "@" + server_->url().substr(std::string("nats://").size());
  }
  std::optional<std::string> ask(const std::string& subject) {
    return SecuredServerTest::ask(*admin_, subject, "heya");
  }

  Result<nats::Connection> admin_ = fail(ErrorCode::kUnavailable, "not connected");
};

TEST_F(UserPasswordNats, ServicesAndFunctionsAnswerAndNoPasswordShowsAnywhere) {
  ASSERT_NO_FATAL_FAILURE(start_node("node"));
  const fs::path logs_out = dir_ / "logs.txt";
  Subprocess logs = spawn({"--context", "admin", "logs"}, logs_out);
  for (int i = 0; i < 200 && slurp(logs_out).find("Following") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);

  // The echo service logs in with the user and password in its NATS_URL.
  auto service = nex(
      {"--context", "admin", "devrun", "./echoservice", "NATS_URL=" + url_with("echo:echo-pw-3")});
  ASSERT_EQ(service.code, 0) << service.out;
  EXPECT_EQ(ask("svc.echo"), "heya") << slurp(node_log_);
  // A function without a login of its own: the node relays its triggers.
  auto relayed = nex({"--context", "admin", "devrun", "./echo.js", "--trigger_subject=fn.relayed"});
  ASSERT_EQ(relayed.code, 0) << relayed.out;
  EXPECT_EQ(ask("fn.relayed"), "heya") << slurp(node_log_);
  EXPECT_NE(slurp(node_log_).find("has its triggers relayed by the node over its channel"),
            std::string::npos)
      << slurp(node_log_);
  // One whose deployer gave it a login takes its triggers itself, as that user.
  fs::copy_file(home() / "echo.js", home() / "own.js");
  auto own = nex({"--context", "admin", "devrun", "./own.js", "--trigger_subject=fn.own",
                  "NATS_URL=" + url_with("fn:fn-pw-4")});
  ASSERT_EQ(own.code, 0) << own.out;
  EXPECT_EQ(ask("fn.own"), "heya") << slurp(node_log_);
  EXPECT_NE(slurp(node_log_).find("Function own takes its triggers directly, with the NATS login "
                                  "its deployer gave it (NATS_URL)"),
            std::string::npos)
      << slurp(node_log_);

  // The logins travelled sealed: no password in the node's log nor in the workloads' logs.
  for (int i = 0;
       i < 100 && slurp(logs_out).find("Echo service using NATS url") == std::string::npos; ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_NE(slurp(logs_out).find("Echo service using NATS url 'nats://***@"), std::string::npos)
      << slurp(logs_out);
  for (const char* secret : {"node-pw-1", "admin-pw-2", "echo-pw-3", "fn-pw-4"}) {
    EXPECT_EQ(slurp(node_log_).find(secret), std::string::npos) << secret;
    EXPECT_EQ(slurp(logs_out).find(secret), std::string::npos) << secret;
  }
  (void)logs.signal(SIGINT);
  logs.wait_for(5s);
}

// A login that cannot take the function's triggers is a refused deploy that says why, and leaves
// nothing behind: not a function that silently never answers.
TEST_F(UserPasswordNats, AFunctionsOwnLoginThatCannotTakeItsTriggersIsRefused) {
  ASSERT_NO_FATAL_FAILURE(start_node("node"));
  auto not_allowed = nex({"--context", "admin", "devrun", "./echo.js",
                          "--trigger_subject=fn.elsewhere", "NATS_URL=" + url_with("fn:fn-pw-4")});
  EXPECT_NE(not_allowed.code, 0) << not_allowed.out;
  EXPECT_NE(not_allowed.out.find("Permissions Violation for Subscription to \"fn.elsewhere\""),
            std::string::npos)
      << not_allowed.out;
  auto wrong = nex({"--context", "admin", "devrun", "./echo.js", "--trigger_subject=fn.own",
                    "NATS_URL=" + url_with("fn:not-the-password")});
  EXPECT_NE(wrong.code, 0) << wrong.out;
  EXPECT_NE(wrong.out.find("Authorization Violation"), std::string::npos) << wrong.out;
  EXPECT_EQ(wrong.out.find("not-the-password"), std::string::npos) << wrong.out;
  auto ls = nex({"--context", "admin", "node", "ls", "--json"});
  ASSERT_EQ(ls.code, 0) << ls.out;
  const json nodes = json::parse(ls.out, nullptr, false);
  ASSERT_TRUE(nodes.is_array() && nodes.size() == 1) << ls.out;
  EXPECT_EQ(nodes[0]["running_machines"], 0) << ls.out;
}

}  // namespace
}  // namespace nex
