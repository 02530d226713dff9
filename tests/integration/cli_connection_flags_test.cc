// The CLI's connection flags as a user types them, each against a nats-server that lets in only
// the login the flag gives: with the flag `nex node ls` gets through (and says no node answered),
// without it, or with a wrong one, it is turned away.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/subprocess.h"
#include "crypto/nkeys.h"
#include "nats/local_server.h"
#include "testing/cli.h"
#include "testing/nats_server_fixture.h"
#include "testing/operator_chain.h"

namespace nex {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::CliResult;

class CliConnectionFlags : public ::testing::Test {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    dir_ = fs::temp_directory_path() /
           ("nex-cli-flags-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    server_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void start_with_config(const std::string& config) {
    std::ofstream(dir_ / "server.conf") << config;
    auto s =
        nats::LocalNatsServer::start({.jetstream = false, .config_file = dir_ / "server.conf"});
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::make_unique<nats::LocalNatsServer>(std::move(*s));
  }
  // `nex -s URL FLAGS... node ls`, with nothing from the test's environment (no NATS_URL, no
  // context in a HOME of its own).
  CliResult ls(const std::vector<std::string>& flags, const std::string& url = {}) {
    return run(flags, {"--timeout", "1", "node", "ls"}, url);
  }
  // `nex -s URL FLAGS... COMMAND...`, as above.
  CliResult run(const std::vector<std::string>& flags, const std::vector<std::string>& command,
                const std::string& url = {}) {
    std::vector<std::string> args = {"-s", url.empty() ? server_->url() : url};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), command.begin(), command.end());
    std::vector<std::string> env = {"HOME=" + dir_.string(), "PATH=/usr/bin:/bin"};
    // The sanitizer run's settings (scripts/test.sh) reach the CLI it runs.
    for (const char* name : {"ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"})
      if (const char* value = std::getenv(name)) env.push_back(std::string(name) + "=" + value);
    // A file per run: each run's output alone.
    const fs::path out = dir_ / ("out-" + std::to_string(++runs_) + ".txt");
    return testing::run_nex(args, {.cwd = dir_, .env = env, .clear_env = true}, out);
  }
  static void expect_let_in(const CliResult& r) {
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("No nex node answered"), std::string::npos) << r.out;
  }
  static void expect_turned_away(const CliResult& r) {
    EXPECT_NE(r.code, 0) << r.out;
    EXPECT_EQ(r.out.find("No nex node answered"), std::string::npos) << r.out;
  }

  fs::path dir_;
  int runs_ = 0;
  std::unique_ptr<nats::LocalNatsServer> server_;
};

TEST_F(CliConnectionFlags, UserAndPassword) {
  start_with_config("authorization { user: alice, password: \"s3cr3t pw\" }\n");
  expect_let_in(ls({"--user", "alice", "--password", "s3cr3t pw"}));
  expect_turned_away(ls({}));
  CliResult wrong = ls({"--user", "alice", "--password", "wrong"});
  expect_turned_away(wrong);
  EXPECT_NE(wrong.out.find("uthorization"), std::string::npos) << wrong.out;
}

// A node whose login the server refuses, or whose credentials file is missing, says which
// server and why, and exits 1: no crash, and nothing started to shut down.
TEST_F(CliConnectionFlags, NodeUpWithoutOrWithWrongCredentialsSaysWhyAndExitsOne) {
  start_with_config("authorization { user: alice, password: \"s3cr3t pw\" }\n");
  const std::vector<std::string> up = {"node", "up", "--state-dir", (dir_ / "state").string()};
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{}, {"--user", "alice", "--password", "wrong"}}) {
    CliResult r = run(flags, up);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_NE(r.out.find(server_->url()), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("uthorization"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("Shutting down"), std::string::npos) << r.out;
  }
  const fs::path missing = dir_ / "missing.creds";
  CliResult r = run({"--creds", missing.string()}, up);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find(missing.string()), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("Shutting down"), std::string::npos) << r.out;
}

TEST_F(CliConnectionFlags, Token) {
  start_with_config("authorization { token: \"t0ken\" }\n");
  expect_let_in(ls({"--token", "t0ken"}));
  expect_turned_away(ls({}));
  expect_turned_away(ls({"--token", "nope"}));
}

TEST_F(CliConnectionFlags, NkeySeedFile) {
  auto user = crypto::KeyPair::create(crypto::KeyType::kUser);
  ASSERT_TRUE(user);
  start_with_config("authorization { users: [ { nkey: " + user->public_key() + " } ] }\n");
  std::ofstream(dir_ / "user.nk") << user->seed() << "\n";
  expect_let_in(ls({"--nkey", (dir_ / "user.nk").string()}));
  expect_turned_away(ls({}));
  auto stranger = crypto::KeyPair::create(crypto::KeyType::kUser);
  std::ofstream(dir_ / "stranger.nk") << stranger->seed() << "\n";
  expect_turned_away(ls({"--nkey", (dir_ / "stranger.nk").string()}));
}

TEST_F(CliConnectionFlags, CredsFile) {
  testing::OperatorChain chain;
  const auto account = chain.account("acct");
  start_with_config(chain.server_config());
  account.user("cli").write_creds(dir_ / "cli.creds");
  expect_let_in(ls({"--creds", (dir_ / "cli.creds").string()}));
  expect_turned_away(ls({}));
}

// A server with a certificate of a throwaway CA that also asks for the client's certificate:
// --tlsca trusts the server, --tlscert/--tlskey show the client's.
TEST_F(CliConnectionFlags, TlsCaAndClientCertificate) {
  const std::string d = dir_.string();
  const std::string script =
      "cd '" + d +
      "' && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 "
      "-subj /CN=nex-test-ca 2>/dev/null && "
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
      "-subj /CN=127.0.0.1 2>/dev/null && "
      "printf 'subjectAltName=IP:127.0.0.1' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem "
      "-days 1 -extfile san.ext 2>/dev/null && "
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
      "-subj /CN=nex-cli 2>/dev/null && "
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-out client.pem -days 1 2>/dev/null";
  if (std::system(script.c_str()) != 0)
    GTEST_SKIP() << "openssl CLI unavailable to make test certificates";
  start_with_config("tls { cert_file: '" + d + "/server.pem', key_file: '" + d +
                    "/server.key', ca_file: '" + d + "/ca.pem', verify: true }\n");
  const std::string url = "tls://127.0.0.1:" + std::to_string(server_->port());
  const std::string ca = d + "/ca.pem", cert = d + "/client.pem", key = d + "/client.key";
  expect_let_in(ls({"--tlsca", ca, "--tlscert", cert, "--tlskey", key}, url));
  expect_turned_away(ls({"--tlsca", ca}, url));                       // no client certificate
  expect_turned_away(ls({"--tlscert", cert, "--tlskey", key}, url));  // the server not trusted
}

}  // namespace
}  // namespace nex
