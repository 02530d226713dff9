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
#include "testing/nats_server_fixture.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

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
