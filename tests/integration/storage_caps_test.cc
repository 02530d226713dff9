// The caps a node keeps on what it stores in JetStream: every stream and bucket it creates has a
// byte cap, a message-size cap and an age cap, from its config, set again when a bucket has
// others, and shown in INFO and `nex node info`. Kept workloads outlive their bucket's age cap:
// the node writes them again.
#include <gtest/gtest.h>

#include "nats/key_value.h"
#include "node/workload_store.h"
#include "testing/cli.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;

class StorageCapsTest : public testing::NodeTest {};

TEST_F(StorageCapsTest, TheKeptWorkloadsBucketGetsTheConfiguredCapsEvenWhenItHadOthers) {
  // As an earlier node (or anyone) could have left it: no caps at all.
  ASSERT_TRUE(nats::KeyValue::create(*js_, {.bucket = "NEX_NODE_WORKLOADS"}));
  NodeConfig config;
  config.kept_workloads = {
      .max_bytes = 64 << 20, .max_message_bytes = 3 << 20, .retention_days = 7};
  start_node(config);
  auto stream = js_->stream_info("KV_NEX_NODE_WORKLOADS");
  ASSERT_TRUE(stream) << stream.error().message;
  EXPECT_EQ(stream->config.max_bytes, 64 << 20);
  EXPECT_EQ(stream->config.max_msg_size, 3 << 20);
  EXPECT_EQ(stream->config.max_age, std::chrono::hours(24 * 7));
}

TEST_F(StorageCapsTest, InfoShowsTheCapsOfEveryStreamAndBucketTheNodeCreates) {
  NodeConfig config;
  config.kept_workloads.retention_days = 9;
  config.commands.max_message_bytes = 128 << 10;
  config.host_services_settings.kv.caps.max_bytes = 2 << 20;
  config.host_services_settings.object_store.caps.retention_days = 0;
  start_node(config);
  const json storage = info()["data"]["storage"];
  for (const char* name : {"NEX_COMMANDS", "NEX_COMMAND_RESULTS", "NEX_NODES", "NEX_NODE_WORKLOADS",
                           "hs_{namespace}_{workload}_kv", "hs_{namespace}_{workload}_obj"}) {
    ASSERT_TRUE(storage.contains(name)) << name << " missing from " << storage.dump();
    for (const char* cap : {"max_bytes", "max_message_bytes", "retention_days"})
      EXPECT_TRUE(storage[name][cap].is_number_integer()) << name << "." << cap;
  }
  EXPECT_EQ(storage["NEX_NODE_WORKLOADS"]["retention_days"], 9);
  EXPECT_EQ(storage["NEX_COMMANDS"]["max_message_bytes"], 128 << 10);
  EXPECT_EQ(storage["hs_{namespace}_{workload}_kv"]["max_bytes"], 2 << 20);
  // And what the node says is what the streams get (the command service sets them up in the
  // background, as JetStream answers).
  int64_t applied = -1;
  for (int i = 0; i < 200 && applied != (128 << 10); ++i, std::this_thread::sleep_for(50ms)) {
    auto commands = js_->stream_info("NEX_COMMANDS");
    applied = commands ? commands->config.max_msg_size : -1;
  }
  EXPECT_EQ(applied, 128 << 10);

  std::filesystem::create_directories(state_dir_);
  testing::CliResult shown = testing::run_nex(
      {"node", "info", node_->id(), "-s", server().url()},
      {.cwd = state_dir_, .env = {"HOME=" + state_dir_.string()}}, state_dir_ / "cli.out");
  ASSERT_EQ(shown.code, 0) << shown.out;
  EXPECT_NE(shown.out.find("NEX_NODE_WORKLOADS: 268,435,456, 4,194,304, 9 days, 1"),
            std::string::npos)
      << shown.out;
  EXPECT_NE(shown.out.find("hs_{namespace}_{workload}_obj: 524,288, 262,144, until removed, 1"),
            std::string::npos)
      << shown.out;
}

// An entry the node wrote longer ago than half the retention is written again, so a workload
// that runs longer than the bucket's age cap still comes back after a restart.
TEST_F(StorageCapsTest, KeptEntriesAreWrittenAgainBeforeTheyAge) {
  auto key = crypto::KeyPair::create(crypto::KeyType::kServer);
  ASSERT_TRUE(key);
  std::string where;
  std::filesystem::create_directories(state_dir_);
  auto store =
      WorkloadStore::open(*conn_, *key, state_dir_, NodeConfig{}.kept_workloads, {}, where);
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_OK((*store)->put({.id = "w1", .ns = "default", .request = "{}"}));
  auto kv = nats::KeyValue::bind(*js_, "NEX_NODE_WORKLOADS");
  ASSERT_TRUE(kv) << kv.error().message;
  const auto before = kv->get(key->public_key() + ".w1");
  ASSERT_TRUE(before) << before.error().message;

  auto young = (*store)->refresh(1h);
  ASSERT_TRUE(young) << young.error().message;
  EXPECT_EQ(*young, 0u) << "an entry written just now was written again";
  auto old = (*store)->refresh(0s);
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(*old, 1u);
  const auto after = kv->get(key->public_key() + ".w1");
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_GT(after->revision, before->revision);
  EXPECT_EQ(after->value, before->value);
  // Still the node's own, signed entry.
  auto listed = (*store)->list();
  ASSERT_TRUE(listed) << listed.error().message;
  ASSERT_EQ(listed->entries.size(), 1u);
  EXPECT_EQ(listed->entries[0].id, "w1");
}

}  // namespace
}  // namespace nex::node
