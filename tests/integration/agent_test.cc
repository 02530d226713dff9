// The agent on its own, against a real nats-server, as the node drives it: it checks the artifact
// it was handed against the hash the node sends, whatever happened to the file in between.
#include "agent/agent.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "api/agent.h"
#include "core/encoding.h"
#include "crypto/digest.h"
#include "testing/nats_server_fixture.h"

namespace nex::agent {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
namespace fs = std::filesystem;

class AgentTest : public testing::NatsServerTest {
 protected:
  void SetUp() override {
    NatsServerTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ = fs::temp_directory_path() / ("nex-agent-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    artifact_ = dir_ / unique("artifact");
    id_ = unique("agent");
    node_ = std::make_unique<nats::Connection>(connect());
    // The node's end of the handshake: any answer lets the agent start serving.
    auto hs = node_->subscribe(api::agent_subject::handshake(id_),
                               [this](nats::Message m) { (void)node_->publish(m.reply(), "{}"); });
    ASSERT_TRUE(hs) << hs.error().message;
    handshake_ = std::move(*hs);
    ASSERT_OK(node_->flush());
  }
  void TearDown() override {
    agent_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void write_artifact(const std::string& bytes) {
    std::ofstream(artifact_, std::ios::binary | std::ios::trunc) << bytes;
  }
  void start_agent() {
    const nats::ConnectOptions options{.urls = {server().url()}};
    auto conn = nats::Connection::connect(options);
    ASSERT_TRUE(conn) << conn.error().message;
    agent_ = std::make_unique<Agent>(std::move(*conn), options, id_, artifact_);
    ASSERT_OK(agent_->start());
  }
  // Sends the node's deploy request; the agent's answer.
  json deploy(const std::string& hash) {
    api::AgentDeployRequest req;
    req.workload_name = "checked";
    req.ns = "default";
    req.hash = hash;
    return deploy(req);
  }
  json deploy(const api::AgentDeployRequest& req) {
    auto r = node_->request(api::agent_subject::deploy(id_), api::to_json(req).dump(), 10s);
    if (!r) return json{{"transport_error", r.error().message}};
    return json::parse(r->data());
  }

  fs::path dir_;
  fs::path artifact_;
  std::string id_;
  std::unique_ptr<nats::Connection> node_;
  nats::Subscription handshake_;
  std::unique_ptr<Agent> agent_;
};

std::string sha256_hex(const std::string& bytes) {
  return hex_encode(crypto::sha256(as_bytes(bytes)));
}

// The node hashed one file, and another is in its place when the agent starts it (replaced in
// the sandbox directory, or corrupted on the way): the agent refuses to run it.
TEST_F(AgentTest, AnArtifactThatIsNotTheOneTheNodeHashedIsNotStarted) {
  const std::string hashed = "#!/bin/sh\nexit 0\n";
  write_artifact("#!/bin/sh\necho swapped\n");
  start_agent();
  json r = deploy(sha256_hex(hashed));
  EXPECT_EQ(r["accepted"], false) << r.dump();
  EXPECT_NE(
      r.value("message", "").find("artifact SHA-256 mismatch: expected " + sha256_hex(hashed)),
      std::string::npos)
      << r.dump();

  // The file the node hashed is started.
  write_artifact(hashed);
  r = deploy(sha256_hex(hashed));
  EXPECT_EQ(r["accepted"], true) << r.dump();
}

// The user's NATS, where a function's callers are, restarts just as the agent deploys the function:
// the agent waits for it to come back rather than refusing the workload.
TEST_F(AgentTest, AFunctionWaitsForTheUsersNatsToComeBackWhileItDeploys) {
  const std::string code = "(subject, payload) => payload\n";
  write_artifact(code);
  start_agent();
  ASSERT_OK_AND_ASSIGN(users, nats::LocalNatsServer::start({.jetstream = false}));
  users.stop();  // its port stays reserved: connecting is refused, as while a server restarts
  api::AgentDeployRequest req;
  req.workload_name = "echo";
  req.ns = "default";
  req.hash = sha256_hex(code);
  req.workload_type = api::WorkloadType::kJavaScript;
  req.trigger_subjects = {unique("echo")};
  req.trigger_nats_urls = {users.url()};
  // The server comes back from this thread: its process dies with the thread that started it.
  auto deployed = std::async(std::launch::async, [&] { return deploy(req); });
  std::this_thread::sleep_for(1s);
  ASSERT_OK(users.restart());
  json r = deployed.get();
  ASSERT_EQ(r["accepted"], true) << r.dump();

  ASSERT_OK_AND_ASSIGN(caller, nats::Connection::connect({.urls = {users.url()}}));
  ASSERT_OK_AND_ASSIGN(answer, caller.request(req.trigger_subjects[0], "hi", 5s));
  EXPECT_EQ(answer.data(), "hi");
}

}  // namespace
}  // namespace nex::agent
