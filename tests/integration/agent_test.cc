// The agent on its own, against a real nats-server, as the node drives it: it checks the artifact
// it was handed against the hash the node sends, whatever happened to the file in between.
#include "agent/agent.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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

}  // namespace
}  // namespace nex::agent
