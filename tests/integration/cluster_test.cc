// A fleet on a NATS cluster: what a node creates in JetStream is replicated as the cluster
// allows (jetstream_replicas "auto"), a number the JetStream cannot keep is refused at start,
// and streams made with fewer replicas are raised when the config says so. Real nats-servers
// on loopback, clustered by the test.
#include <gtest/gtest.h>

#include "nats/key_value.h"
#include "node/node.h"
#include "testing/nats_cluster.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NEX_REQUIRE_NATS_SERVER();
    dir_ = fs::temp_directory_path() /
           ("nex-cluster-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto cluster = testing::NatsCluster::start(3, dir_);
    ASSERT_TRUE(cluster) << cluster.error().message;
    cluster_ = std::make_unique<testing::NatsCluster>(std::move(*cluster));
    auto conn = nats::Connection::connect({.urls = {cluster_->servers()[2].url()}});
    ASSERT_TRUE(conn) << conn.error().message;
    conn_ = std::make_unique<nats::Connection>(std::move(*conn));
    auto js = nats::JetStream::create(*conn_);
    ASSERT_TRUE(js) << js.error().message;
    js_ = std::make_unique<nats::JetStream>(std::move(*js));
  }
  void TearDown() override {
    node_.reset();
    js_.reset();
    conn_.reset();
    cluster_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Result<std::unique_ptr<Node>> start_node(NodeConfig config) {
    config.no_sandbox = true;
    return Node::start({.config = config,
                        .control = {.urls = {cluster_->servers()[0].url()}},
                        .state_dir = dir_ / "node",
                        .version = "test"});
  }
  // The replicas of `stream`, once it exists (the command service makes its streams in the
  // background, as JetStream answers).
  int64_t replicas_of(const std::string& stream) {
    std::string last;
    for (auto end = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(100ms)) {
      auto info = js_->stream_info(stream);
      if (info) return info->config.replicas;
      last = info.error().message;
    }
    ADD_FAILURE() << stream << ": " << last;
    return -1;
  }

  fs::path dir_;
  std::unique_ptr<testing::NatsCluster> cluster_;
  std::unique_ptr<nats::Connection> conn_;
  std::unique_ptr<nats::JetStream> js_;
  std::unique_ptr<Node> node_;
};

TEST_F(ClusterTest, OnAClusterOfThreeWhatTheNodeCreatesKeepsThreeReplicas) {
  auto node = start_node({});
  ASSERT_TRUE(node) << node.error().message;
  node_ = std::move(*node);
  for (const char* stream :
       {"KV_NEX_NODE_WORKLOADS", "NEX_COMMANDS", "NEX_COMMAND_RESULTS", "KV_NEX_NODES"})
    EXPECT_EQ(replicas_of(stream), 3) << stream;
  // The node answers from another server of the cluster, and says what it chose.
  auto info = conn_->request("$NEX.INFO.default." + node_->id(), "", 5s);
  ASSERT_TRUE(info) << info.error().message;
  const auto storage = nlohmann::json::parse(info->data())["data"]["storage"];
  EXPECT_EQ(storage["NEX_NODE_WORKLOADS"]["replicas"], 3) << storage.dump();
  EXPECT_EQ(storage["hs_{namespace}_{workload}_kv"]["replicas"], 3) << storage.dump();
}

TEST_F(ClusterTest, StreamsMadeWithOneReplicaAreRaisedOnlyWhenTheConfigSaysSo) {
  ASSERT_TRUE(nats::KeyValue::create(*js_, {.bucket = "NEX_NODE_WORKLOADS"}));
  {
    auto node = start_node({});
    ASSERT_TRUE(node) << node.error().message;
  }
  EXPECT_EQ(replicas_of("KV_NEX_NODE_WORKLOADS"), 1) << "raised without being asked to";
  NodeConfig raise;
  raise.raise_jetstream_replicas = true;
  auto node = start_node(raise);
  ASSERT_TRUE(node) << node.error().message;
  EXPECT_EQ(replicas_of("KV_NEX_NODE_WORKLOADS"), 3);
}

// On one server: "auto" keeps one replica, and a number the JetStream cannot keep is refused,
// naming the field, before anything starts.
class SingleServerReplicasTest : public testing::NodeTest {};

TEST_F(SingleServerReplicasTest, AutoKeepsOneAndAnImpossibleNumberIsRefusedAtStart) {
  NodeConfig three;
  three.no_sandbox = true;
  three.jetstream_replicas = 3;
  auto refused = Node::start({.config = three,
                              .control = {.urls = {server().url()}},
                              .state_dir = state_dir_,
                              .version = "test"});
  ASSERT_FALSE(refused);
  EXPECT_NE(
      refused.error().message.find("jetstream_replicas is 3 but this JetStream cannot keep 3"),
      std::string::npos)
      << refused.error().message;
  start_node();
  auto info = js_->stream_info("KV_NEX_NODE_WORKLOADS");
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->config.replicas, 1);
  EXPECT_EQ(this->info()["data"]["storage"]["NEX_COMMANDS"]["replicas"], 1);
}

}  // namespace
}  // namespace nex::node
