// `nex node ls` and `nex node info`, run as a user types them against `nex up`.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "core/subprocess.h"
#include "nats/connection.h"
#include "testing/nats_server_fixture.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

using ::nex::testing::slurp;

struct CliResult {
  int code;
  std::string out;
};

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
    auto up = Subprocess::spawn(
        {.argv = {NEX_BINARY, "up", "--port", "0", "--state-dir", state_.string()},
         .stdout_path = log_.string(),
         .stderr_path = log_.string()});
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
  fs::path state_, log_;
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

TEST_F(CliNode, DevrunTwiceReplacesTheFirstAndStopEndsIt) {
  // As in the seeds: `nex devrun ./echoservice NATS_URL=...`, keys created in ~/.nex.
  const fs::path home = state_ / "home";
  fs::create_directories(home);
  fs::copy_file(fs::read_symlink("/proc/self/exe").parent_path() / "echoservice",
                home / "echoservice");
  const std::vector<std::string> env = {"HOME=" + home.string(), "NATS_URL=" + url_};
  auto run = [&](std::vector<std::string> args) {
    // Run from the user's directory so "./echoservice" means what it says.
    std::vector<std::string> cmd = {"sh", "-c", "cd '" + home.string() + "' && exec \"$0\" \"$@\"",
                                    NEX_BINARY};
    cmd.insert(cmd.end(), args.begin(), args.end());
    const fs::path out = home / "out.txt";
    auto p = Subprocess::spawn(
        {.argv = cmd, .env = env, .stdout_path = out.string(), .stderr_path = out.string()});
    auto st = p->wait_for(30s);
    CliResult r{st ? WEXITSTATUS(*st) : -1, slurp(out)};
    fs::remove(out);
    return r;
  };
  CliResult first = run({"devrun", "./echoservice", "NATS_URL=" + url_, "ECHO_SUBJECT=svc.echo"});
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_NE(first.out.find("Created issuer account key: " + (home / ".nex/issuer.nk").string()),
            std::string::npos)
      << first.out;
  EXPECT_EQ(fs::status(home / ".nex/issuer.nk").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(home / ".nex/publisher.xk").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  std::smatch m;
  const std::regex accepted(
      "🚀 Workload 'echoservice' accepted\\. You can now refer to this workload with ID: "
      "([a-v0-9]{20}) on node (N[A-Z2-7]{55})");
  ASSERT_TRUE(std::regex_search(first.out, m, accepted)) << first.out;
  const std::string first_id = m[1];
  EXPECT_EQ(m[2], node_);

  auto conn = nats::Connection::connect({.urls = {url_}});
  ASSERT_TRUE(conn);
  auto answered = [&] {
    for (int i = 0; i < 200; ++i) {
      auto r = conn->request("svc.echo", "this is a test", 500ms);
      if (r && r->data() == "this is a test") return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  };
  ASSERT_TRUE(answered()) << "nats req svc.echo got no answer";

  CliResult second = run({"devrun", "./echoservice", "NATS_URL=" + url_, "ECHO_SUBJECT=svc.echo"});
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
  ASSERT_TRUE(answered());
  CliResult info = run({"node", "info", node_});
  EXPECT_EQ(info.out.find(first_id), std::string::npos) << "the first instance still runs:\n"
                                                        << info.out;
  EXPECT_NE(info.out.find("Id: " + second_id + " Healthy: true"), std::string::npos) << info.out;

  CliResult stopped = run({"stop", node_, second_id});
  EXPECT_EQ(stopped.code, 0) << stopped.out;
  auto gone = conn->request("svc.echo", "x", 500ms);
  EXPECT_FALSE(gone);

  CliResult missing = run({"devrun", "./missing"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("file not found: ./missing"), std::string::npos) << missing.out;
  CliResult dynamic = run({"devrun", "/bin/true"});
  EXPECT_EQ(dynamic.code, 1);
  EXPECT_NE(dynamic.out.find("cc -static"), std::string::npos) << dynamic.out;
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
