// `nex up` driven as a user runs it: it prints a NATS URL that works with JetStream and the id
// of a node answering on it, and Ctrl-C (SIGINT) stops both cleanly with nothing left behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "core/subprocess.h"
#include "nats/key_value.h"
#include "testing/cli.h"
#include "testing/nats_server_fixture.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

using ::nex::testing::slurp;

TEST(CliUp, RunsLocalJetStreamAndStopsCleanlyOnCtrlC) {
  NEX_REQUIRE_NATS_SERVER();
  const fs::path out = fs::temp_directory_path() / ("nex-up-" + std::to_string(getpid()) + ".out");
  fs::remove(out);
  const fs::path state = fs::temp_directory_path() / ("nex-up-state-" + std::to_string(getpid()));
  auto up =
      Subprocess::spawn({.argv = {NEX_BINARY, "up", "--port", "0", "--state-dir", state.string()},
                         .stdout_path = out.string(),
                         .stderr_path = out.string()});
  ASSERT_TRUE(up) << up.error().message;

  std::smatch match;
  std::string text;
  const std::regex url_re("listening on (nats://127\\.0\\.0\\.1:[0-9]+)");
  const std::regex store_re("JetStream store: (\\S+)");
  for (int i = 0; i < 200 && !std::regex_search(text, match, url_re); ++i) {
    std::this_thread::sleep_for(50ms);
    text = slurp(out);
  }
  ASSERT_TRUE(std::regex_search(text, match, url_re)) << text;
  const std::string url = match[1];
  ASSERT_TRUE(std::regex_search(text, match, store_re)) << text;
  const fs::path store = match[1].str();
  EXPECT_TRUE(fs::exists(store));
  EXPECT_NE(text.find("Ctrl-C"), std::string::npos);
  EXPECT_NE(text.find("/echoservice NATS_URL=" + url), std::string::npos) << text;
  const std::regex node_re("Node (N[A-Z2-7]{55}) is up");
  ASSERT_TRUE(std::regex_search(text, match, node_re)) << text;
  const std::string node_id = match[1];

  {
    ASSERT_OK_AND_ASSIGN(conn, nats::Connection::connect({.urls = {url}}));
    ASSERT_OK_AND_ASSIGN(js, nats::JetStream::create(conn));
    ASSERT_OK_AND_ASSIGN(kv, nats::KeyValue::create(js, {.bucket = "smoke"}));
    ASSERT_OK(kv.put("hello", "world"));
    EXPECT_EQ(kv.get("hello")->value, "world");
    // The node answers on the control subjects of that NATS.
    ASSERT_OK_AND_ASSIGN(pong, conn.request("$NEX.PING." + node_id, "", 5s));
    EXPECT_NE(std::string(pong.data()).find(node_id), std::string::npos);
  }

  ASSERT_TRUE(up->signal(SIGINT));
  auto status = up->wait_for(15s);
  ASSERT_TRUE(status) << "nex up did not stop on SIGINT";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << slurp(out);
  EXPECT_NE(slurp(out).find("Stopped."), std::string::npos);
  EXPECT_FALSE(fs::exists(store)) << "the temporary store was left behind";
  EXPECT_FALSE(nats::Connection::connect({.urls = {url}, .connect_timeout = 500ms}))
      << "the NATS server outlived nex up";
  fs::remove(out);
  fs::remove_all(state);
}

// What `nex up` prints once it is ready, run from `cwd`; stopped with Ctrl-C afterwards.
std::string up_output_from(const fs::path& cwd) {
  const fs::path out = fs::temp_directory_path() / ("nex-up-hints-" + std::to_string(getpid()));
  const fs::path state = out.string() + ".state";
  auto up =
      testing::spawn_nex({"up", "--port", "0", "--state-dir", state.string()}, {.cwd = cwd}, out);
  EXPECT_TRUE(up) << up.error().message;
  if (!up) return "";
  std::string text;
  for (int i = 0; i < 300 && text.find("Press Ctrl-C") == std::string::npos; ++i) {
    std::this_thread::sleep_for(50ms);
    text = slurp(out);
  }
  (void)up->signal(SIGINT);
  up->wait_for(15s);
  fs::remove(out);
  fs::remove_all(state);
  return text;
}

// The files `nex devrun FILE` hints name, as printed.
std::vector<std::string> devrun_hints(const std::string& text) {
  std::vector<std::string> files;
  const std::regex devrun_re("nex devrun (\\S+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), devrun_re);
       it != std::sregex_iterator(); ++it)
    files.push_back((*it)[1]);
  return files;
}

// The hints are typed where the user is: each file they name exists from there, relative to it
// when it lies below it (as from the source tree), absolute otherwise.
TEST(CliUp, HintsNameFilesThatExistFromWhereTheUserIs) {
  NEX_REQUIRE_NATS_SERVER();
  const fs::path elsewhere = fs::temp_directory_path() / ("nex-up-cwd-" + std::to_string(getpid()));
  fs::create_directories(elsewhere);
  const std::string away = up_output_from(elsewhere);
  const auto away_files = devrun_hints(away);
  EXPECT_EQ(away_files.size(), 2u) << away;
  for (const auto& file : away_files) {
    EXPECT_TRUE(fs::path(file).is_absolute()) << file << "\n" << away;
    EXPECT_TRUE(fs::is_regular_file(elsewhere / file)) << file << "\n" << away;
  }
  fs::remove_all(elsewhere);

  const fs::path source = NEX_SOURCE_DIR;
  const std::string home = up_output_from(source);
  const auto home_files = devrun_hints(home);
  EXPECT_EQ(home_files.size(), 2u) << home;
  for (const auto& file : home_files) {
    EXPECT_TRUE(fs::is_regular_file(source / file)) << file << "\n" << home;
  }
  EXPECT_NE(home.find("nex devrun examples/echofunction/echo.js"), std::string::npos) << home;
}

// `nex node up ARGS...` against a server that is not there; its exit code and output.
std::pair<int, std::string> node_up(std::vector<std::string> args) {
  const fs::path out =
      fs::temp_directory_path() / ("nex-node-up-" + std::to_string(getpid()) + ".out");
  args.insert(args.begin(), {NEX_BINARY, "node", "up"});
  args.insert(args.end(), {"-s", "nats://127.0.0.1:1"});
  auto p = Subprocess::spawn({.argv = args, .stdout_path = out, .stderr_path = out});
  auto st = p ? p->wait_for(10s) : std::nullopt;
  std::pair<int, std::string> r{st ? WEXITSTATUS(*st) : -1, slurp(out)};
  fs::remove(out);
  return r;
}

TEST(CliNodeUp, BadConfigRefusesToStartNamingTheField) {
  const fs::path conf =
      fs::temp_directory_path() / ("nex-bad-config-" + std::to_string(getpid()) + ".json");
  std::ofstream(conf) << R"({"machine_pool_size": "two"})";
  auto [code, out] = node_up({"--config", conf.string()});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("field 'machine_pool_size' must be an integer"), std::string::npos) << out;
  fs::remove(conf);
}

TEST(CliNodeUp, ABadMetricsAddressRefusesToStartSayingWhatItExpects) {
  auto [code, out] = node_up({"--metrics", "9100"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("--metrics: expected HOST:PORT (for example 127.0.0.1:9100) or :PORT, "
                     "got '9100': no port"),
            std::string::npos)
      << out;
}

TEST(CliUp, VersionAndUsageExitCodes) {
  auto run = [](std::vector<std::string> argv) {
    argv.insert(argv.begin(), NEX_BINARY);
    auto p =
        Subprocess::spawn({.argv = argv, .stdout_path = "/dev/null", .stderr_path = "/dev/null"});
    auto st = p->wait_for(10s);
    return WEXITSTATUS(*st);
  };
  EXPECT_EQ(run({"version"}), 0);
  EXPECT_EQ(run({"--help"}), 0);
  EXPECT_EQ(run({}), 2);
  EXPECT_EQ(run({"no-such-command"}), 2);
  EXPECT_EQ(run({"up", "--port", "not-a-number"}), 2);
}

}  // namespace
}  // namespace nex
