// The nex CLI run as a user types it against `nex up`: Nex's walkthrough (node ls, devrun,
// a request answered, node info, logs, events, stop, devrun twice), deploys that take long or go
// unanswered, devrun's replacing, run, lameduck, probe, logs filters and bash completion.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "core/encoding.h"
#include "core/subprocess.h"
#include "crypto/digest.h"
#include "crypto/nkeys.h"
#include "crypto/xkeys.h"
#include "nats/connection.h"
#include "nats/object_store.h"
#include "testing/cli.h"
#include "testing/nats_server_fixture.h"
#include "testing/sandbox_host.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

using ::nex::testing::slurp;

using testing::CliResult;

// Runs `nex ARGS...` to completion and returns its exit code and combined output.
CliResult nex(std::vector<std::string> args) {
  static int n = 0;
  const fs::path out = fs::temp_directory_path() /
                       ("nex-cli-" + std::to_string(getpid()) + "-" + std::to_string(++n));
  args.insert(args.begin(), NEX_BINARY);
  auto p =
      Subprocess::spawn({.argv = args, .stdout_path = out.string(), .stderr_path = out.string()});
  auto st = p->wait_for(30s);
  CliResult r{st ? WEXITSTATUS(*st) : -1, slurp(out)};
  fs::remove(out);
  return r;
}

class CliNode : public ::testing::Test {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    state_ = fs::temp_directory_path() / ("nex-cli-node-" + std::to_string(getpid()));
    log_ = state_.string() + ".up.log";
    std::vector<std::string> argv = {NEX_BINARY, "up",          "--port",
                                     "0",        "--state-dir", state_.string()};
    if (!config_.empty()) argv.insert(argv.end(), {"--config", config_.string()});
    auto up = Subprocess::spawn(
        {.argv = argv, .stdout_path = log_.string(), .stderr_path = log_.string()});
    ASSERT_TRUE(up);
    up_ = std::make_unique<Subprocess>(std::move(*up));
    std::smatch m;
    const std::regex url_re("listening on (nats://127\\.0\\.0\\.1:[0-9]+)"),
        node_re("Node (N[A-Z2-7]{55}) is up");
    for (int i = 0; i < 200; ++i) {
      const std::string text = slurp(log_);
      if (std::regex_search(text, m, node_re)) {
        node_ = m[1];
        std::regex_search(text, m, url_re);
        url_ = m[1];
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "nex up did not come up: " << slurp(log_);
  }
  void TearDown() override {
    if (up_) {
      (void)up_->signal(SIGINT);
      up_->wait_for(15s);
    }
    std::error_code ec;
    fs::remove_all(state_, ec);
    fs::remove(log_, ec);
  }
  // The user's home (HOME, for ~/.nex) and working directory, holding a copy of the echo service.
  fs::path home() {
    const fs::path home = state_ / "home";
    if (!fs::exists(home / "echoservice")) {
      fs::create_directories(home);
      fs::copy_file(fs::read_symlink("/proc/self/exe").parent_path() / "echoservice",
                    home / "echoservice");
    }
    return home;
  }
  // The user's issuer and publisher keys in ~/.nex, as the first devrun makes them.
  void write_keys() {
    fs::create_directories(home() / ".nex");
    std::ofstream(home() / ".nex/issuer.nk")
        << crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
    std::ofstream(home() / ".nex/publisher.xk") << crypto::XKey::create().seed();
  }
  // Starts `nex ARGS...` from the user's directory with NATS_URL set, output to `out`.
  testing::CliEnvironment as_user() {
    return {.cwd = home(), .env = {"HOME=" + home().string(), "NATS_URL=" + url_}};
  }
  Subprocess start(const std::vector<std::string>& args, const fs::path& out) {
    auto p = testing::spawn_nex(args, as_user(), out);
    EXPECT_TRUE(p) << p.error().message;
    return std::move(*p);
  }
  // Runs `nex ARGS...` as the user types it, to completion.
  CliResult user(const std::vector<std::string>& args) {
    const fs::path out = home() / "out.txt";
    CliResult r = testing::run_nex(args, as_user(), out);
    fs::remove(out);
    return r;
  }
  // `nex logs` / `nex events` in the background, once they follow their subjects.
  Subprocess follow(std::vector<std::string> args, const fs::path& out) {
    Subprocess p = start(std::move(args), out);
    for (int i = 0; i < 200 && slurp(out).find("Following") == std::string::npos; ++i)
      std::this_thread::sleep_for(20ms);
    EXPECT_NE(slurp(out).find("Following"), std::string::npos) << slurp(out);
    return p;
  }
  bool echo_answers(const nats::Connection& conn, const std::string& subject) {
    for (int i = 0; i < 200; ++i) {
      auto r = conn.request(subject, "this is a test", 500ms);
      if (r && r->data() == "this is a test") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  static bool eventually_contains(const fs::path& file, const std::string& text) {
    for (int i = 0; i < 250; ++i) {
      if (slurp(file).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  // Nex's walkthrough: node ls, devrun, a request answered, logs, events, devrun again, stop.
  void walkthrough();

  fs::path state_, log_;
  fs::path config_;  // a node configuration for `nex up --config`, if any
  std::unique_ptr<Subprocess> up_;
  std::string url_, node_;
};

TEST_F(CliNode, LsAndInfoShowTheNode) {
  CliResult ls = nex({"node", "ls", "-s", url_, "--timeout", "0.5"});
  EXPECT_EQ(ls.code, 0) << ls.out;
  EXPECT_NE(ls.out.find("NATS Execution Nodes"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(node_), std::string::npos) << ls.out;
  CliResult full = nex({"node", "ls", "--full", "-s", url_, "--timeout", "0.5"});
  EXPECT_NE(full.out.find("nex.os=linux"), std::string::npos) << full.out;

  CliResult json = nex({"node", "ls", "--json", "-s", url_, "--timeout", "0.5"});
  ASSERT_EQ(json.code, 0) << json.out;
  auto parsed = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(parsed.is_array()) << json.out;
  ASSERT_EQ(parsed.size(), 1u);
  EXPECT_EQ(parsed[0]["node_id"], node_);

  CliResult info = nex({"node", "info", node_, "-s", url_});
  EXPECT_EQ(info.code, 0) << info.out;
  for (const char* expect :
       {"NEX Node Information", "Xkey: X", "Uptime: ", "Memory in kB:", "Workloads:"}) {
    EXPECT_NE(info.out.find(expect), std::string::npos) << expect << "\n" << info.out;
  }
}

// Nex's secured-NATS walkthrough types `nex --context ExpAdmin devrun ...`: the nats CLI's contexts
// name the server.
TEST_F(CliNode, ANatsContextSaysWhereAndHowToConnect) {
  const fs::path dir = home() / ".config/nats/context";
  fs::create_directories(dir);
  // As `nats context add ExpAdmin --server URL` writes it.
  std::ofstream(dir / "ExpAdmin.json") << nlohmann::json{
      {"description", "secured walkthrough"},
      {"url", url_},
      {"token", ""},
      {"user", ""},
      {"password", ""},
      {"creds", ""},
      {"nkey", ""},
      {"cert", ""},
      {"key", ""},
      {"ca", ""},
      {"nsc", ""},
      {"jetstream_domain", ""}}.dump(2);
  // Only what the context says: no NATS_URL in the environment.
  auto run = [&](std::vector<std::string> args, std::vector<std::string> env = {}) {
    const fs::path out = home() / "ctx.txt";
    args.insert(args.begin(), NEX_BINARY);
    env.push_back("HOME=" + home().string());
    auto p = Subprocess::spawn({.argv = args,
                                .env = env,
                                .clear_env = true,
                                .stdout_path = out.string(),
                                .stderr_path = out.string()});
    auto st = p->wait_for(30s);
    CliResult r{st ? WEXITSTATUS(*st) : -1, slurp(out)};
    fs::remove(out);
    return r;
  };
  auto by_flag = run({"--context", "ExpAdmin", "node", "ls"});
  EXPECT_EQ(by_flag.code, 0) << by_flag.out;
  EXPECT_NE(by_flag.out.find(node_), std::string::npos) << by_flag.out;
  auto by_env = run({"node", "ls"}, {"NATS_CONTEXT=ExpAdmin"});
  EXPECT_NE(by_env.out.find(node_), std::string::npos) << by_env.out;
  // An explicit flag wins over the context.
  auto overridden = run({"--context", "ExpAdmin", "-s", "nats://127.0.0.1:1", "node", "ls"});
  EXPECT_NE(overridden.code, 0);
  EXPECT_EQ(overridden.out.find(node_), std::string::npos) << overridden.out;
  auto missing = run({"--context", "Nope", "node", "ls"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("no nats context 'Nope' (" + (dir / "Nope.json").string() + ")"),
            std::string::npos)
      << missing.out;
}

// `nats context select ExpAdmin` writes the name to context.txt beside the context folder; the
// nats CLI uses it when neither --context nor NATS_CONTEXT names one, and so does nex.
TEST_F(CliNode, TheNatsCliSelectedContextIsUsedWhenNoneIsNamed) {
  const fs::path config = home() / ".config/nats";
  fs::create_directories(config / "context");
  std::ofstream(config / "context/ExpAdmin.json") << nlohmann::json{{"url", url_}}.dump(2);
  std::ofstream(config / "context/Elsewhere.json")
      << nlohmann::json{{"url", "nats://127.0.0.1:1"}}.dump(2);
  std::ofstream(config / "context.txt") << "ExpAdmin\n";  // as `nats context select` leaves it
  // HOME is the test's temporary directory, and nothing else says where NATS is.
  auto run = [&](std::vector<std::string> args, std::vector<std::string> env = {}) {
    env.push_back("HOME=" + home().string());
    const fs::path out = home() / "selected.txt";
    auto r = testing::run_nex(args, {.cwd = home(), .env = env, .clear_env = true}, out);
    fs::remove(out);  // output is appended to it
    return r;
  };
  auto selected = run({"node", "ls"});
  EXPECT_EQ(selected.code, 0) << selected.out;
  EXPECT_NE(selected.out.find(node_), std::string::npos) << selected.out;
  // NATS_CONTEXT and --context win over the selection.
  auto by_env = run({"node", "ls", "--timeout", "0.5"}, {"NATS_CONTEXT=Elsewhere"});
  EXPECT_EQ(by_env.code, 1) << by_env.out;
  EXPECT_NE(by_env.out.find("nats://127.0.0.1:1"), std::string::npos) << by_env.out;
  auto by_flag = run({"--context", "Elsewhere", "node", "ls", "--timeout", "0.5"});
  EXPECT_EQ(by_flag.code, 1) << by_flag.out;
  EXPECT_NE(by_flag.out.find("nats://127.0.0.1:1"), std::string::npos) << by_flag.out;
  // A selection naming a context that is not there is an error that says where it came from.
  std::ofstream(config / "context.txt") << "Gone\n";
  auto gone = run({"node", "ls"});
  EXPECT_EQ(gone.code, 1) << gone.out;
  EXPECT_NE(gone.out.find("no nats context 'Gone'"), std::string::npos) << gone.out;
  EXPECT_NE(gone.out.find((config / "context.txt").string()), std::string::npos) << gone.out;
}

TEST_F(CliNode, ErrorsSayWhatToDo) {
  CliResult unknown = nex({"node", "info", "NNOSUCHNODE", "-s", url_});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_NE(unknown.out.find("did not answer"), std::string::npos) << unknown.out;
  CliResult unreachable = nex({"node", "ls", "-s", "nats://127.0.0.1:1", "--timeout", "0.5"});
  EXPECT_EQ(unreachable.code, 1);
  EXPECT_NE(unreachable.out.find("nats://127.0.0.1:1"), std::string::npos) << unreachable.out;
  CliResult usage = nex({"node", "info"});
  EXPECT_EQ(usage.code, 2) << usage.out;
}

// `nex node up` with no NATS to reach says which URL and why, exits 1, and leaves nothing behind
// (it used to crash with a segfault while shutting down a node that never started).
TEST(CliNodeUp, WithoutNatsItSaysWhereItTriedAndExitsOne) {
  const fs::path state = fs::temp_directory_path() / ("nex-noup-" + std::to_string(getpid()));
  CliResult plain = nex({"node", "up", "-s", "nats://127.0.0.1:1", "--state-dir", state.string()});
  EXPECT_EQ(plain.code, 1) << plain.out;
  EXPECT_NE(plain.out.find("nats://127.0.0.1:1"), std::string::npos) << plain.out;
  EXPECT_EQ(plain.out.find("Shutting down"), std::string::npos)
      << "a node that never started has nothing to shut down:\n"
      << plain.out;
  std::error_code ec;
  fs::remove_all(state, ec);
}

// Under a supervisor, a node started before its NATS server waits for it instead of exiting.
TEST(CliNodeUp, WithConnectRetryItWaitsForNatsSayingSoAndStartsWhenItComes) {
  NEX_REQUIRE_NATS_SERVER();
  auto server = nats::LocalNatsServer::start({});
  ASSERT_TRUE(server) << server.error().message;
  server->stop();  // its port stays reserved: connecting is refused until restart()
  const fs::path state = fs::temp_directory_path() / ("nex-retryup-" + std::to_string(getpid()));
  const fs::path log = state.string() + ".log";
  auto up = Subprocess::spawn({.argv = {NEX_BINARY, "node", "up", "-s", server->url(),
                                        "--connect-retry", "--state-dir", state.string()},
                               .stdout_path = log.string(),
                               .stderr_path = log.string()});
  ASSERT_TRUE(up) << up.error().message;
  auto logged = [&](const std::string& text, std::chrono::seconds within) {
    for (auto end = std::chrono::steady_clock::now() + within;
         std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(50ms))
      if (slurp(log).find(text) != std::string::npos) return true;
    return false;
  };
  EXPECT_TRUE(logged("trying again in 1 s (--connect-retry)", 10s)) << slurp(log);
  EXPECT_NE(slurp(log).find(server->url()), std::string::npos) << slurp(log);
  ASSERT_OK(server->restart());
  EXPECT_TRUE(logged("Established node NATS connection", 40s)) << slurp(log);
  ASSERT_OK(up->signal(SIGTERM));
  auto status = up->wait_for(30s);
  ASSERT_TRUE(status);
  EXPECT_EQ(WEXITSTATUS(*status), 0) << slurp(log);
  std::error_code ec;
  fs::remove_all(state, ec);
  fs::remove(log, ec);
}

// The same walkthrough, unchanged, with `nex up` running workloads in the namespace sandbox (a
// root filesystem image built by `nex rootfs`, as a user would).
class CliNodeSandboxed : public CliNode {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NAMESPACE_SANDBOX();
    const auto& host = testing::SandboxHost::get();
    const fs::path image = host.dir() / "cli-rootfs.ext4";
    CliResult built = nex({"rootfs", "-o", image.string()});
    ASSERT_EQ(built.code, 0) << built.out;
    ASSERT_NE(built.out.find("Built " + image.string() + ": ext4"), std::string::npos) << built.out;
    config_ = host.dir() / "cli-node.json";
    host.write_config(config_, image);
    CliNode::SetUp();
  }
};

TEST_F(CliNodeSandboxed, TheSeedWalkthroughRunsUnchangedInTheNamespaceSandbox) {
  EXPECT_TRUE(eventually_contains(log_, "namespace sandbox")) << slurp(log_);
  walkthrough();
}

TEST_F(CliNode, TheSeedWalkthroughAsAUserTypesIt) { walkthrough(); }

void CliNode::walkthrough() {
  // Logs and events followed from the start, as a user would in other terminals.
  const fs::path logs_out = state_ / "logs.txt", events_out = state_ / "events.txt";
  Subprocess logs = follow({"logs"}, logs_out);
  Subprocess events = follow({"events"}, events_out);

  CliResult ls = user({"node", "ls"});
  EXPECT_NE(ls.out.find(node_), std::string::npos) << ls.out;

  // As in the seeds: `nex devrun ./echoservice NATS_URL=...`, keys created in ~/.nex.
  CliResult first = user({"devrun", "./echoservice", "NATS_URL=" + url_});
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_NE(first.out.find("Created issuer account key: " + (home() / ".nex/issuer.nk").string()),
            std::string::npos)
      << first.out;
  EXPECT_EQ(fs::status(home() / ".nex/issuer.nk").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(home() / ".nex/publisher.xk").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::smatch m;
  const std::regex accepted(
      "🚀 Workload 'echoservice' accepted\\. You can now refer to this workload with ID: "
      "([a-v0-9]{20}) on node (N[A-Z2-7]{55})");
  ASSERT_TRUE(std::regex_search(first.out, m, accepted)) << first.out;
  const std::string first_id = m[1];
  EXPECT_EQ(m[2], node_);

  // `nats req svc.echo 'this is a test'`
  auto conn = nats::Connection::connect({.urls = {url_}});
  ASSERT_TRUE(conn);
  ASSERT_TRUE(echo_answers(*conn, "svc.echo")) << "nats req svc.echo got no answer";

  // `nex logs` shows what the service printed, naming it; `nex events` shows the deploy.
  EXPECT_TRUE(eventually_contains(logs_out, "echoservice (" + first_id + " on " +
                                                node_.substr(0, 8) + ") Starting echo service"))
      << slurp(logs_out);
  EXPECT_TRUE(eventually_contains(logs_out, "INFO")) << slurp(logs_out);
  EXPECT_TRUE(eventually_contains(events_out, "workload_deployed")) << slurp(events_out);
  EXPECT_TRUE(eventually_contains(events_out, node_ + "-" + first_id)) << slurp(events_out);

  CliResult second = user({"devrun", "./echoservice", "NATS_URL=" + url_});
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_NE(second.out.find("Reusing existing issuer account key"), std::string::npos)
      << second.out;
  EXPECT_NE(second.out.find("Reusing existing publisher xkey"), std::string::npos) << second.out;
  EXPECT_NE(second.out.find("Stopped the previous 'echoservice' (" + first_id + ")"),
            std::string::npos)
      << second.out;
  ASSERT_TRUE(std::regex_search(second.out, m, accepted)) << second.out;
  const std::string second_id = m[1];
  EXPECT_NE(second_id, first_id);
  ASSERT_TRUE(echo_answers(*conn, "svc.echo"));
  CliResult info = user({"node", "info", node_});
  EXPECT_EQ(info.out.find(first_id), std::string::npos) << "the first instance still runs:\n"
                                                        << info.out;
  EXPECT_NE(info.out.find("Id: " + second_id + " Healthy: true"), std::string::npos) << info.out;

  // `nex node probe` finds it by name; a name nothing runs is an error.
  CliResult probe = user({"node", "probe", "echoservice"});
  EXPECT_EQ(probe.code, 0) << probe.out;
  EXPECT_NE(probe.out.find(second_id), std::string::npos) << probe.out;
  CliResult nothing = user({"node", "probe", "nosuchworkload", "--timeout", "0.5"});
  EXPECT_EQ(nothing.code, 1) << nothing.out;
  EXPECT_NE(nothing.out.find("No workload 'nosuchworkload' answered"), std::string::npos)
      << nothing.out;

  CliResult stopped = user({"stop", node_, second_id});
  EXPECT_EQ(stopped.code, 0) << stopped.out;
  auto gone = conn->request("svc.echo", "x", 500ms);
  EXPECT_FALSE(gone);
  EXPECT_TRUE(eventually_contains(events_out, "workload_undeployed")) << slurp(events_out);

  // Ctrl-C ends the followers cleanly.
  for (Subprocess* p : {&logs, &events}) {
    ASSERT_TRUE(p->signal(SIGINT));
    auto st = p->wait_for(5s);
    ASSERT_TRUE(st);
    EXPECT_TRUE(WIFEXITED(*st) && WEXITSTATUS(*st) == 0);
  }

  CliResult missing = user({"devrun", "./missing"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("file not found: ./missing"), std::string::npos) << missing.out;
  CliResult dynamic = user({"devrun", "/bin/true"});
  EXPECT_EQ(dynamic.code, 1);
  EXPECT_NE(dynamic.out.find("cc -static"), std::string::npos) << dynamic.out;
}

// --namespace puts a workload in a namespace of the user's: it is seen and stopped there, and
// not from the default one.
TEST_F(CliNode, TheNamespaceFlagKeepsWorkloadsApart) {
  CliResult run = user({"--namespace", "team", "devrun", "./echoservice", "NATS_URL=" + url_});
  ASSERT_EQ(run.code, 0) << run.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(run.out, m, std::regex("with ID: ([a-v0-9]{20})"))) << run.out;
  const std::string id = m[1];
  CliResult team = user({"--namespace", "team", "node", "info", node_});
  EXPECT_NE(team.out.find("Id: " + id), std::string::npos) << team.out;
  CliResult other = user({"node", "info", node_});
  EXPECT_EQ(other.out.find(id), std::string::npos) << "seen from the default namespace:\n"
                                                   << other.out;
  CliResult wrong = user({"stop", node_, id});
  EXPECT_NE(wrong.code, 0) << "stopped from the default namespace:\n" << wrong.out;
  CliResult right = user({"--namespace", "team", "stop", node_, id});
  EXPECT_EQ(right.code, 0) << right.out;
  team = user({"--namespace", "team", "node", "info", node_});
  EXPECT_EQ(team.out.find(id), std::string::npos) << team.out;
}

TEST_F(CliNode, FunctionsDeployAsTheSeedsShow) {
  // `nex devrun /path/to/echo.js --trigger_subject=js.echo`, then `nats req js.echo 'heya'`.
  const fs::path js = fs::path(NEX_EXAMPLES_DIR) / "echofunction/echo.js";
  CliResult dev_js = user({"devrun", js.string(), "--trigger_subject=js.echo"});
  ASSERT_EQ(dev_js.code, 0) << dev_js.out;
  EXPECT_NE(dev_js.out.find("🚀 Workload 'echo' accepted"), std::string::npos) << dev_js.out;
  auto conn = nats::Connection::connect({.urls = {url_}});
  ASSERT_TRUE(conn);
  auto heya = conn->request("js.echo", "heya", 5s);
  ASSERT_TRUE(heya) << heya.error().message;
  EXPECT_EQ(heya->data(), "heya");

  // `nex devrun echofunction.wasm --trigger_subject=wasm.echo`, `nats req wasm.echo 'hello'`.
  const fs::path wasm = fs::path(NEX_WASM_DIR) / "echo.wasm";
  if (!fs::exists(wasm)) GTEST_SKIP() << wasm << " was not built (clang with wasi-libc missing)";
  fs::copy_file(wasm, home() / "echofunction.wasm");
  CliResult dev_wasm = user({"devrun", "./echofunction.wasm", "--trigger_subject=wasm.echo"});
  ASSERT_EQ(dev_wasm.code, 0) << dev_wasm.out;
  auto hello = conn->request("wasm.echo", "hello", 5s);
  ASSERT_TRUE(hello) << hello.error().message;
  EXPECT_EQ(hello->data(), "hellowasm.echo");

  CliResult info = user({"node", "info", node_});
  EXPECT_NE(info.out.find("Name: echo\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("Name: echofunction\n"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("Invocations: 1 Total run time: "), std::string::npos) << info.out;
  CliResult no_trigger = user({"devrun", js.string()});
  EXPECT_EQ(no_trigger.code, 1);
  EXPECT_NE(no_trigger.out.find("trigger subject"), std::string::npos) << no_trigger.out;
}

// What a function reaches for first: text to and from bytes, and base64, in a deployed function.
TEST_F(CliNode, AFunctionDecodesEncodesAndBase64sText) {
  std::ofstream(home() / "text.js") << R"JS((subject, payload) => {
  const text = new TextDecoder().decode(payload);
  const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(text)));
  const back = new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)));
  let refused = '';
  try { btoa(text); } catch (e) { refused = e.name; }
  return new TextEncoder().encode(JSON.stringify({ text, b64, back, refused }));
};
)JS";
  CliResult dev = user({"devrun", "./text.js", "--trigger_subject=js.text"});
  ASSERT_EQ(dev.code, 0) << dev.out;
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  auto r = conn.request("js.text", "caf\xc3\xa9 \xe2\x82\xac", 5s);
  ASSERT_TRUE(r) << r.error().message;
  auto j = nlohmann::json::parse(r->data(), nullptr, false);
  ASSERT_TRUE(j.is_object()) << r->data();
  EXPECT_EQ(j["text"], "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(j["b64"], "Y2Fmw6kg4oKs");
  EXPECT_EQ(j["back"], j["text"]);
  EXPECT_EQ(j["refused"], "InvalidCharacterError");
}

// A function whose top-level code runs for 3 s takes longer to deploy than `--timeout 2`: the
// CLI waits as long as the node says a deploy may take, and a slow start is never a refusal.
TEST_F(CliNode, DevrunWaitsAsLongAsTheNodeSaysADeployMayTake) {
  std::ofstream(home() / "slow.js") << "const t0 = Date.now();\n"
                                       "while (Date.now() - t0 < 3000) {}\n"
                                       "(subject, payload) => payload\n";
  CliResult r = user({"devrun", "./slow.js", "--trigger_subject=slow.echo", "--timeout", "2"});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("🚀 Workload 'slow' accepted"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("refused"), std::string::npos) << r.out;
}

// A stand-in node on the test's server: it answers PING and INFO as a node does (after
// `info_delay`), stating a deploy deadline of `deadline` and one workload; deploys and stops go
// to the given handlers, which may answer late or never.
struct StandInNode {
  std::string id = crypto::KeyPair::create(crypto::KeyType::kServer)->public_key();
  std::string workload_id = "dcbstandinworkload00";
  std::atomic<int> deploys{0}, stops{0};
  std::vector<nats::Subscription> subs;

  Status start(nats::Connection& conn, std::chrono::milliseconds deadline,
               std::chrono::milliseconds info_delay, nats::MessageHandler on_stop = {}) {
    const std::string xkey = crypto::XKey::create().public_key();
    const nlohmann::json machine = {{"id", workload_id}, {"workload", {{"name", "echoservice"}}}};
    const nlohmann::json data = {{"node_id", id},
                                 {"target_xkey", xkey},
                                 {"public_xkey", xkey},
                                 {"machines", nlohmann::json::array({machine})},
                                 {"deploy_deadline_ms", deadline.count()}};
    auto answer = [&conn, data, info_delay](nats::Message m) {
      std::this_thread::sleep_for(info_delay);
      (void)conn.publish(m.reply(), nlohmann::json{{"type", "info"}, {"data", data}}.dump());
    };
    for (const std::string& subject : {"$NEX.PING." + id, "$NEX.INFO.default." + id}) {
      auto sub = conn.subscribe(subject, answer);
      if (!sub) return fail(sub.error());
      subs.push_back(std::move(*sub));
    }
    auto deploy = conn.subscribe("$NEX.DEPLOY.default." + id, [this](nats::Message) { ++deploys; });
    if (!deploy) return fail(deploy.error());
    subs.push_back(std::move(*deploy));
    auto stop = conn.subscribe("$NEX.STOP.default." + id, [this, on_stop](nats::Message m) {
      ++stops;
      if (on_stop) on_stop(std::move(m));
    });
    if (!stop) return fail(stop.error());
    subs.push_back(std::move(*stop));
    return conn.flush();
  }
  ~StandInNode() {
    for (auto& sub : subs) sub.unsubscribe_and_wait();
  }
};

// A node that takes a deploy and never answers: the CLI waits the deadline that node states,
// then says what may be going on and where to look, without calling it a refusal.
TEST_F(CliNode, ADeployLeftUnansweredSaysSoAndIsNotCalledARefusal) {
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  {
    ASSERT_OK_AND_ASSIGN(js, nats::JetStream::create(conn));
    ASSERT_OK_AND_ASSIGN(store, nats::ObjectStore::create(js, {.bucket = "MYFILES"}));
    ASSERT_OK(store.put_file("echoservice", home() / "echoservice"));
  }
  write_keys();
  StandInNode silent;
  ASSERT_OK(silent.start(conn, 1000ms, 0ms));
  CliResult r = user({"run", "nats://MYFILES/echoservice", silent.id, "--name", "echoservice",
                      "NATS_URL=" + url_, "--timeout", "5"});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("no answer in 1 s; the node may still be starting it: `nex node info " +
                       silent.id + "`"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("refused"), std::string::npos) << r.out;
  EXPECT_EQ(silent.deploys.load(), 1);
}

// A stop waits as long as the node says a deploy or stop may take, not --timeout: a node that
// answers a stop after 2 s is heard by `nex --timeout 1 stop`.
TEST_F(CliNode, AStopWaitsTheNodesDeadlineNotTheTimeout) {
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  write_keys();
  StandInNode slow;
  ASSERT_OK(slow.start(conn, 5000ms, 0ms, [&conn](nats::Message m) {
    std::this_thread::sleep_for(2s);
    (void)conn.publish(m.reply(), R"({"type":"stop_response","data":{"stopped":true}})");
  }));
  CliResult r = user({"--timeout", "1", "stop", slow.id, slow.workload_id});
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("Workload " + slow.workload_id + " (echoservice) stopped"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(slow.stops.load(), 1);
}

// --timeout is the wait for quick answers: a node that takes 2 s to answer INFO is not heard
// with `--timeout 1`, which says there was no answer, and is heard with `--timeout 4`.
TEST_F(CliNode, TheTimeoutFlagIsTheWaitForQuickAnswers) {
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  StandInNode slow;
  ASSERT_OK(slow.start(conn, 60000ms, 2000ms));
  CliResult quick = user({"--timeout", "1", "node", "info", slow.id});
  EXPECT_EQ(quick.code, 1) << quick.out;
  EXPECT_EQ(quick.out.find(slow.workload_id), std::string::npos) << quick.out;
  CliResult patient = user({"--timeout", "4", "node", "info", slow.id});
  EXPECT_EQ(patient.code, 0) << patient.out;
  EXPECT_NE(patient.out.find(slow.workload_id), std::string::npos) << patient.out;
}

// A redeploy the node refuses leaves the running workload alone: devrun replaces the old one
// only after the new one was accepted.
TEST_F(CliNode, ARefusedRedeployLeavesTheRunningWorkloadRunning) {
  std::ofstream(home() / "fn.js") << "(subject, payload) => payload\n";
  CliResult first = user({"devrun", "./fn.js", "--trigger_subject=fn.echo"});
  ASSERT_EQ(first.code, 0) << first.out;
  std::ofstream(home() / "fn.js") << "(subject, payload) => {\n";  // does not compile
  CliResult broken = user({"devrun", "./fn.js", "--trigger_subject=fn.echo"});
  EXPECT_EQ(broken.code, 1) << broken.out;
  EXPECT_EQ(broken.out.find("Stopped the previous"), std::string::npos) << broken.out;
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  auto r = conn.request("fn.echo", "still here", 5s);
  ASSERT_TRUE(r) << "the running function was stopped: " << r.error().message;
  EXPECT_EQ(r->data(), "still here");
}

// echo.js and echo.wasm both default to the name `echo`: the second would replace a function of
// another kind, so it is refused with the way out (--name), and the first keeps running.
TEST_F(CliNode, ADevrunThatWouldReplaceAnotherTypeIsRefused) {
  const fs::path wasm = fs::path(NEX_WASM_DIR) / "echo.wasm";
  if (!fs::exists(wasm)) GTEST_SKIP() << wasm << " was not built (clang with wasi-libc missing)";
  fs::copy_file(fs::path(NEX_EXAMPLES_DIR) / "echofunction/echo.js", home() / "echo.js");
  fs::copy_file(wasm, home() / "echo.wasm");
  CliResult js = user({"devrun", "./echo.js", "--trigger_subject=js.echo"});
  ASSERT_EQ(js.code, 0) << js.out;
  CliResult other = user({"devrun", "./echo.wasm", "--trigger_subject=wasm.echo"});
  EXPECT_EQ(other.code, 1) << other.out;
  EXPECT_NE(other.out.find("'echo'"), std::string::npos) << other.out;
  EXPECT_NE(other.out.find("--name"), std::string::npos) << other.out;
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  auto r = conn.request("js.echo", "heya", 5s);
  ASSERT_TRUE(r) << "echo.js was replaced: " << r.error().message;
  EXPECT_EQ(r->data(), "heya");
  auto none = conn.request("wasm.echo", "hello", 5s);  // nothing subscribes: told at once
  ASSERT_FALSE(none) << "echo.wasm was deployed: " << none->data();
  EXPECT_EQ(none.error().code, ErrorCode::kNoResponders) << none.error().message;
  CliResult renamed =
      user({"devrun", "./echo.wasm", "--trigger_subject=wasm.echo", "--name", "echo-wasm"});
  EXPECT_EQ(renamed.code, 0) << renamed.out;
}

// A trigger subject NATS would refuse is refused at deploy, before the node takes an agent for
// it, naming the field and the rule, without libnats' source locations.
TEST_F(CliNode, ATriggerSubjectNatsRefusesIsRefusedAtDeployByName) {
  const fs::path js = fs::path(NEX_EXAMPLES_DIR) / "echofunction/echo.js";
  // An empty one never leaves the CLI: its flag parser names the flag.
  CliResult empty = user({"devrun", js.string(), "--trigger_subject="});
  EXPECT_NE(empty.code, 0) << empty.out;
  EXPECT_NE(empty.out.find("--trigger_subject"), std::string::npos) << empty.out;
  for (const std::string subject : {"a b", "a..b", "a.>.b", "fn.\x01"}) {
    CliResult r = user({"devrun", js.string(), "--trigger_subject=" + subject});
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find("trigger_subjects"), std::string::npos) << subject << ": " << r.out;
    EXPECT_NE(r.out.find("not a valid NATS subject"), std::string::npos)
        << subject << ": " << r.out;
    EXPECT_EQ(r.out.find(".c:"), std::string::npos) << subject << ": " << r.out;
  }
  CliResult ok = user({"devrun", js.string(), "--trigger_subject=fn.*.echo"});
  EXPECT_EQ(ok.code, 0) << ok.out;
}

TEST_F(CliNode, RunDeploysFromAnObjectStoreStatingEverything) {
  // The artifact is in the user's own bucket, put there with any NATS client.
  {
    ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
    ASSERT_OK_AND_ASSIGN(js, nats::JetStream::create(conn));
    ASSERT_OK_AND_ASSIGN(store, nats::ObjectStore::create(js, {.bucket = "MYFILES"}));
    ASSERT_OK(store.put_file("echoservice", home() / "echoservice"));
    ASSERT_OK(store.put_bytes("notes.txt", "just text"));
  }
  const fs::path keys = home() / "keys";
  fs::create_directories(keys);
  {
    std::ofstream(keys / "issuer.nk") << crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
    std::ofstream(keys / "publisher.xk") << crypto::XKey::create().seed();
  }
  const std::vector<std::string> keys_flags = {"--xkey=./keys/publisher.xk",
                                               "--issuer=./keys/issuer.nk"};
  auto run = [&](std::vector<std::string> args, bool with_keys = true) {
    std::vector<std::string> cmd = {"run"};
    if (with_keys) cmd.insert(cmd.end(), keys_flags.begin(), keys_flags.end());
    cmd.insert(cmd.end(), args.begin(), args.end());
    return user(cmd);
  };
  // As the echo-service walkthrough types it (lower-case nats_url becomes NATS_URL).
  const std::vector<std::string> seed_args = {
      "--name=echoservice",         "--description=This is the echo service",
      "nats://MYFILES/echoservice", node_,
      "nats_url=" + url_,           "echo_subject=svc.run"};
  CliResult ok = run(seed_args);
  ASSERT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("🚀 Workload 'echoservice' accepted"), std::string::npos) << ok.out;
  auto conn = nats::Connection::connect({.urls = {url_}});
  ASSERT_TRUE(conn);
  EXPECT_TRUE(echo_answers(*conn, "svc.run"));
  // Unlike devrun, run starts a second instance beside the first.
  CliResult again = run(seed_args);
  ASSERT_EQ(again.code, 0) << again.out;
  CliResult probe = user({"node", "probe", "echoservice", "--json"});
  auto found = nlohmann::json::parse(probe.out, nullptr, false);
  ASSERT_TRUE(found.is_array() && found.size() == 1) << probe.out;
  EXPECT_EQ(found[0]["running_machines"].size(), 2u) << probe.out;
  CliResult info = user({"node", "info", node_});
  EXPECT_NE(info.out.find("Description: This is the echo service"), std::string::npos) << info.out;

  struct Case {
    std::vector<std::string> args;
    bool with_keys;
    std::string expect;
  };
  for (const Case& c : std::vector<Case>{
           {{"--name=e", "nats://NOPE/echoservice", node_}, true, "'NOPE' does not exist"},
           {{"--name=e", "nats://MYFILES/nope", node_}, true, "'nope' not found"},
           {{"--name=e", "MYFILES/echoservice", node_}, true, "nats://BUCKET/key"},
           {{"--name=bad name", "nats://MYFILES/echoservice", node_}, true, "^[a-zA-Z0-9_-]+$"},
           {{"--name=e", "nats://MYFILES/echoservice", "NNOSUCHNODE", "--timeout", "0.5"},
            true,
            "node NNOSUCHNODE did not answer"},
           {{"--name=e", "nats://MYFILES/notes.txt", node_}, true, "--type native|v8|wasm"},
           {{"--name=e", "nats://MYFILES/echoservice", node_, "novalue"}, true, "KEY=VALUE"},
           {{"--name=e", "--xkey=./keys/publisher.xk", "--issuer=./keys/publisher.xk",
             "nats://MYFILES/echoservice", node_},
            false,
            "not an account seed"},
           {{"--name=e", "--xkey=./keys/publisher.xk", "--issuer=./keys/none.nk",
             "nats://MYFILES/echoservice", node_},
            false,
            "cannot read the issuer key"},
       }) {
    CliResult r = run(c.args, c.with_keys);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.expect << "\n" << r.out;
  }
  CliResult usage = run({"nats://MYFILES/echoservice", node_});  // --name is required
  EXPECT_EQ(usage.code, 2) << usage.out;
}

// `nex run` vouches for the bytes it read, never for a digest the bucket's metadata states:
// whoever can write that metadata must not choose the hash an issuer signs. The metadata is
// rewritten here as an attacker would, with a plain JetStream publish.
TEST_F(CliNode, RunSignsTheBytesItReadNotTheDigestInTheMetadata) {
  ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url_}}));
  ASSERT_OK_AND_ASSIGN(js, nats::JetStream::create(conn));
  ASSERT_OK_AND_ASSIGN(store, nats::ObjectStore::create(js, {.bucket = "MYFILES"}));
  ASSERT_OK_AND_ASSIGN(good, store.put_file("echoservice", home() / "echoservice"));
  auto tamper = [&](const std::string& key, const std::string& digest) {
    ASSERT_OK_AND_ASSIGN(info, store.put_file(key, home() / "echoservice"));
    info.digest = digest;
    ASSERT_OK(js.publish("$O.MYFILES.M." + base64_encode(as_bytes(key), Base64::kUrl),
                         nats::object_info_to_json(info)));
  };
  const std::string other = "evil bytes the attacker will put there later";
  tamper("rewritten", "SHA-256=" + base64_encode(crypto::sha256(as_bytes(other)), Base64::kUrl));
  tamper("blanked", "");  // no digest: nothing would check the bytes at all
  std::atomic<int> deploys = 0;
  ASSERT_OK_AND_ASSIGN(sub, conn.subscribe("$NEX.DEPLOY.>", [&](nats::Message) { ++deploys; }));
  ASSERT_OK(conn.flush());

  const fs::path keys = home() / "keys";
  fs::create_directories(keys);
  std::ofstream(keys / "issuer.nk") << crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
  std::ofstream(keys / "publisher.xk") << crypto::XKey::create().seed();
  auto run = [&](const std::string& key, std::vector<std::string> more = {}) {
    std::vector<std::string> cmd = {
        "run",           "--xkey=./keys/publisher.xk", "--issuer=./keys/issuer.nk",
        "--name=" + key, "nats://MYFILES/" + key,      node_};
    cmd.insert(cmd.end(), more.begin(), more.end());
    return user(cmd);
  };
  const std::string good_hex = nats::digest_hex(good.digest);
  struct Refusal {
    std::string key;
    std::vector<std::string> more;
    std::string expect;
  };
  for (const Refusal& c : std::vector<Refusal>{
           {"rewritten", {}, "nats://MYFILES/rewritten: its bytes do not match"},
           {"blanked", {}, "nats://MYFILES/blanked: its metadata states no SHA-256 digest"},
           {"echoservice",
            {"--hash=" + std::string(64, 'a')},
            "nats://MYFILES/echoservice: its SHA-256 is " + good_hex + ", not the --hash"},
           {"echoservice", {"--hash=abc"}, "--hash must be 64 hex digits"},
       }) {
    CliResult r = run(c.key, c.more);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.expect << "\n" << r.out;
  }
  ASSERT_OK(conn.flush());
  EXPECT_EQ(deploys, 0) << "a deploy request was sent for an artifact the CLI could not vouch for";
  EXPECT_EQ(user({"node", "info", node_}).out.find("Name: "), std::string::npos);

  // Good data deploys as before, with or without the user's own --hash.
  CliResult ok = run("echoservice", {"--hash=" + good_hex});
  ASSERT_EQ(ok.code, 0) << ok.out;
  CliResult plain = run("echoservice");
  ASSERT_EQ(plain.code, 0) << plain.out;
  ASSERT_OK(conn.flush());
  EXPECT_EQ(deploys, 2);
}

TEST_F(CliNode, LameduckTurnsNewWorkloadsAway) {
  CliResult ld = user({"node", "lameduck", node_});
  ASSERT_EQ(ld.code, 0) << ld.out;
  EXPECT_NE(ld.out.find("lame duck mode"), std::string::npos) << ld.out;
  CliResult full = user({"node", "ls", "--full"});
  EXPECT_NE(full.out.find("nex.lameduck=true"), std::string::npos) << full.out;
  CliResult dev = user({"devrun", "./echoservice", "--timeout", "0.5"});
  EXPECT_EQ(dev.code, 1) << dev.out;
  EXPECT_NE(dev.out.find("no nex node"), std::string::npos) << dev.out;
}

TEST_F(CliNode, LogsFiltersByLevelAndPrintsRawJson) {
  // Only errors, as JSON: the echo service's info lines never show.
  const fs::path out = state_ / "errors.txt";
  Subprocess errors =
      follow({"logs", "--level", "error", "--json", "--workload_name", "echoservice"}, out);
  const fs::path all_out = state_ / "all.txt";
  Subprocess all = follow({"logs", "--json"}, all_out);
  CliResult dev = user({"devrun", "./echoservice", "NATS_URL=" + url_});
  ASSERT_EQ(dev.code, 0) << dev.out;
  ASSERT_TRUE(eventually_contains(all_out, "Starting echo service")) << slurp(all_out);
  const std::string first = slurp(all_out).substr(slurp(all_out).find('{'));
  auto line = nlohmann::json::parse(first.substr(0, first.find('\n')), nullptr, false);
  EXPECT_EQ(line.value("level", ""), "info") << first;
  EXPECT_FALSE(line.value("id", "").empty()) << first;
  EXPECT_EQ(slurp(out).find("Starting echo service"), std::string::npos) << slurp(out);
  for (Subprocess* p : {&errors, &all}) {
    ASSERT_TRUE(p->signal(SIGINT));
    ASSERT_TRUE(p->wait_for(5s));
  }
  CliResult bad = user({"logs", "--level", "loud"});
  EXPECT_EQ(bad.code, 2) << bad.out;
  CliResult dotted = user({"logs", "--workload_name", "a.b"});
  EXPECT_EQ(dotted.code, 1) << dotted.out;
  EXPECT_NE(dotted.out.find("--workload_name must be one word"), std::string::npos) << dotted.out;
  CliResult type = user({"events", "--type", "nonsense"});
  EXPECT_EQ(type.code, 1) << type.out;
  EXPECT_NE(type.out.find("workload_deployed"), std::string::npos) << type.out;
}

// A workload's text cannot forge lines or drive the terminal of whoever follows its logs; --raw
// prints it as sent.
TEST_F(CliNode, LogsShowControlCharactersEscapedUnlessRaw) {
  std::ofstream(home() / "forge.js")
      << "(subject, payload) => {\n  console.log('ok \\u001b[2J\\nINFO  forged');\n"
         "  return payload;\n};\n";
  const fs::path escaped_out = state_ / "escaped.txt", raw_out = state_ / "raw.txt";
  Subprocess escaped = follow({"logs", "--workload_name", "forge"}, escaped_out);
  Subprocess raw = follow({"logs", "--raw", "--workload_name", "forge"}, raw_out);
  CliResult dev = user({"devrun", "./forge.js", "--trigger_subject=forge.now"});
  ASSERT_EQ(dev.code, 0) << dev.out;
  auto conn = nats::Connection::connect({.urls = {url_}});
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->request("forge.now", "x", 5s));
  EXPECT_TRUE(eventually_contains(escaped_out, ") ok \\x1b[2J\\nINFO  forged\n"))
      << slurp(escaped_out);
  EXPECT_EQ(slurp(escaped_out).find('\x1b'), std::string::npos) << slurp(escaped_out);
  EXPECT_TRUE(eventually_contains(raw_out, ") ok \x1b[2J\nINFO  forged\n")) << slurp(raw_out);
  for (Subprocess* p : {&escaped, &raw}) {
    ASSERT_TRUE(p->signal(SIGINT));
    ASSERT_TRUE(p->wait_for(5s));
  }
}

TEST(CliCompletion, BashCompletesCommandsAndFlags) {
  const fs::path script =
      fs::temp_directory_path() / ("nex-completion-" + std::to_string(getpid()) + ".sh");
  CliResult gen = nex({"completion", "bash"});
  ASSERT_EQ(gen.code, 0) << gen.out;
  std::ofstream(script)
      << gen.out
      << "COMP_WORDS=(nex node l); COMP_CWORD=2; _nex; echo \"1:${COMPREPLY[*]}\"\n"
         "COMP_WORDS=(nex logs --l); COMP_CWORD=2; _nex; echo \"2:${COMPREPLY[*]}\"\n"
         "COMP_WORDS=(nex -s x de); COMP_CWORD=3; _nex; echo \"3:${COMPREPLY[*]}\"\n";
  const fs::path out = script.string() + ".out";
  auto p = Subprocess::spawn({.argv = {"bash", script.string()},
                              .stdout_path = out.string(),
                              .stderr_path = out.string()});
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->wait_for(10s));
  const std::string text = slurp(out);
  EXPECT_NE(text.find("1:ls lameduck\n"), std::string::npos) << text;
  EXPECT_NE(text.find("2:--level\n"), std::string::npos) << text;
  EXPECT_NE(text.find("3:devrun\n"), std::string::npos) << text;
  fs::remove(script);
  fs::remove(out);
}

TEST(CliNodeAlone, LsWithNoNodeSaysHowToStartOne) {
  NEX_REQUIRE_NATS_SERVER();
  auto server = nats::LocalNatsServer::start({.jetstream = false});
  ASSERT_TRUE(server);
  CliResult ls = nex({"node", "ls", "-s", server->url(), "--timeout", "0.5"});
  EXPECT_EQ(ls.code, 0);
  EXPECT_NE(ls.out.find("No nex node answered"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("nex node up"), std::string::npos) << ls.out;
}

}  // namespace
}  // namespace nex

namespace nex {
namespace {

// `nex node preflight` as the node walkthrough shows it: a line per dependency; `--init` writes
// what is missing (the conflist, the root filesystem), after which everything is satisfied.
TEST(CliPreflight, ReportsWhatIsMissingAndInitFixesIt) {
  NEX_REQUIRE_NAMESPACE_SANDBOX();
  const fs::path dir = testing::SandboxHost::get().dir() / "preflight";
  fs::create_directories(dir);
  const fs::path config = dir / "config.json";
  std::ofstream(config) << nlohmann::json{{"rootfs_filepath", dir / "wd" / "rootfs.ext4"},
                                          {"cni",
                                           {{"network_name", "pfnet"}, {"conf_dir", dir / "cni"}}}}
                               .dump();
  CliResult before = nex({"node", "preflight", "--config", config.string()});
  EXPECT_EQ(before.code, 1) << before.out;
  EXPECT_NE(before.out.find("✅ Dependency Satisfied - /usr/lib/cni/ptp [ptp CNI plugin]"),
            std::string::npos)
      << before.out;
  EXPECT_NE(before.out.find("❌ Missing Dependency - " + (dir / "cni/pfnet.conflist").string()),
            std::string::npos)
      << before.out;
  EXPECT_NE(before.out.find("❌ Missing Dependency - " + (dir / "wd/rootfs.ext4").string()),
            std::string::npos)
      << before.out;

  CliResult init = nex({"node", "preflight", "--config", config.string(), "--init"});
  EXPECT_EQ(init.code, 0) << init.out;
  EXPECT_NE(init.out.find("Wrote " + (dir / "cni/pfnet.conflist").string()), std::string::npos)
      << init.out;
  EXPECT_NE(init.out.find("Built " + (dir / "wd/rootfs.ext4").string()), std::string::npos)
      << init.out;
  EXPECT_EQ(init.out.find("❌"), std::string::npos) << init.out;

  // Without a configuration file, the defaults are checked, derived paths included.
  CliResult defaults = nex({"node", "preflight"});
  if (defaults.out.find("No ./config.json here") != std::string::npos) {
    EXPECT_NE(defaults.out.find("/tmp/wd/rootfs.ext4 [Root Filesystem Template]"),
              std::string::npos)
        << defaults.out;
    EXPECT_NE(defaults.out.find("/etc/cni/conf.d/fcnet.conflist [CNI Configuration]"),
              std::string::npos)
        << defaults.out;
  }

  CliResult small = nex({"rootfs", "-o", (dir / "small.ext4").string(), "--size", "8"});
  EXPECT_EQ(small.code, 1) << small.out;
  EXPECT_NE(small.out.find("--size 8 MB is too small"), std::string::npos) << small.out;
  EXPECT_FALSE(fs::exists(dir / "small.ext4"));
}

// Sandboxes that reach every port of the host is a choice preflight names, and how to undo it.
TEST(CliPreflight, AnOpenSandboxNetworkIsReportedAsAChoice) {
  const fs::path dir =
      fs::temp_directory_path() / ("nex-preflight-open-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path config = dir / "config.json";
  std::ofstream(config) << R"({"sandbox_network": "open"})";
  CliResult open = nex({"node", "preflight", "--config", config.string()});
  EXPECT_NE(open.out.find("Notice - \"sandbox_network\": \"open\""), std::string::npos) << open.out;
  EXPECT_NE(open.out.find("\"sandbox_network\": \"filtered\" (the default)"), std::string::npos)
      << open.out;
  std::ofstream(config) << "{}";
  CliResult filtered = nex({"node", "preflight", "--config", config.string()});
  EXPECT_NE(filtered.out.find("✅ Dependency Satisfied - \"sandbox_network\": \"filtered\""),
            std::string::npos)
      << filtered.out;
  EXPECT_EQ(filtered.out.find("Notice"), std::string::npos) << filtered.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nex
