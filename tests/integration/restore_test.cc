// What a restarted node brings back from NEX_NODE_WORKLOADS, tried as an attacker who may write
// that bucket (any workload with the account's permissions could): a planted entry, a stopped
// workload's entry written back, an entry changed to another namespace. And what a user sees
// when a workload cannot come back for now: it stays kept, is shown, and comes back later.
#include <gtest/gtest.h>

#include "crypto/digest.h"
#include "nats/key_value.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using testing::Collector;
using namespace std::chrono_literals;

class RestoreTest : public testing::NodeTest {
 protected:
  nats::KeyValue bucket() {
    auto kv = nats::KeyValue::bind(*js_, "NEX_NODE_WORKLOADS");
    EXPECT_TRUE(kv) << kv.error().message;
    return std::move(*kv);
  }
  std::string key(const std::string& workload_id) { return node_->id() + "." + workload_id; }
  json echo(const std::string& subject, const std::string& name = "echoservice") {
    return deploy_request(name, {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", subject}});
  }
  void restart() {
    node_.reset();
    start_node(config_);
  }
  json machines(const std::string& ns = "default") { return info(ns)["data"]["machines"]; }
  json restores(const std::string& ns = "default") { return info(ns)["data"]["restores"]; }
  NodeConfig config_;
};

TEST_F(RestoreTest, AnEntryPlantedInTheBucketIsNotStarted) {
  start_node();
  // As a workload with the account's permissions could: a signed request of its own, in an
  // entry under this node's prefix, in a namespace of its choosing.
  auto attacker = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  json planted = signed_deploy(echo("svc.echo.planted"), "victim", &attacker);
  ASSERT_OK(bucket().put(key("planted"),
                         json{{"namespace", "victim"}, {"request", planted.dump()}}.dump()));
  restart();
  EXPECT_EQ(machines("victim").size(), 0u);
  EXPECT_FALSE(echo_answers("svc.echo.planted", 1s));
  EXPECT_FALSE(bucket().get(key("planted"))) << "the planted entry was left in the bucket";
}

TEST_F(RestoreTest, AStoppedWorkloadsEntryWrittenBackDoesNotComeBack) {
  start_node();
  json r = deploy(echo("svc.echo.resurrect"));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  auto copied = bucket().get(key(id));  // anyone who may read the bucket can keep a copy
  ASSERT_TRUE(copied) << copied.error().message;
  ASSERT_TRUE(stop(id, "echoservice")["error"].is_null());
  ASSERT_OK(bucket().put(key(id), copied->value));
  restart();
  EXPECT_EQ(machines().size(), 0u);
  EXPECT_FALSE(echo_answers("svc.echo.resurrect", 1s));
}

TEST_F(RestoreTest, AnEntryMovedToAnotherNamespaceIsRefused) {
  start_node();
  json r = deploy(echo("svc.echo.moved"));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  auto entry = bucket().get(key(id));
  ASSERT_TRUE(entry) << entry.error().message;
  json changed = json::parse(entry->value);
  changed["namespace"] = "victim";
  ASSERT_OK(bucket().put(key(id), changed.dump()));
  restart();
  EXPECT_EQ(machines("victim").size(), 0u);
  EXPECT_EQ(machines().size(), 0u);
}

TEST_F(RestoreTest, AWorkloadWhoseArtifactIsAwayIsKeptShownAndComesBackLater) {
  ASSERT_OK(files_->put_file("flaky", testing::kBinDir / "echoservice"));
  start_node();
  json req = echo("svc.echo.flaky", "flaky");
  req["location"] = "nats://NEXCLIFILES/flaky";
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  ASSERT_OK(files_->remove("flaky"));
  Collector events(*conn_, "$NEX.events.default.workload_restore_failed");
  restart();
  json pending = restores();
  ASSERT_EQ(pending.size(), 1u) << info().dump();
  EXPECT_EQ(pending[0]["id"], id);
  EXPECT_EQ(pending[0]["name"], "flaky");
  EXPECT_EQ(pending[0]["state"], "retrying");
  EXPECT_NE(pending[0]["reason"].get<std::string>().find("not found"), std::string::npos)
      << pending.dump();
  EXPECT_TRUE(events.wait_for("\"retrying\":true"));
  EXPECT_TRUE(bucket().get(key(id))) << "the entry must be kept while it may still come back";
  // The artifact is back: so is the workload, without a restart.
  ASSERT_OK(files_->put_file("flaky", testing::kBinDir / "echoservice"));
  EXPECT_TRUE(echo_answers("svc.echo.flaky", 15s));
  // The service answers as soon as it runs, a moment before the node's deploy returns and takes
  // it off the pending list: wait for that, rather than race it.
  size_t pending_now = restores().size();
  for (int i = 0; i < 100 && pending_now != 0; ++i) {
    std::this_thread::sleep_for(50ms);
    pending_now = restores().size();
  }
  EXPECT_EQ(pending_now, 0u);
}

TEST_F(RestoreTest, AWorkloadWhoseArtifactChangedIsShownFailedUntilItsDeployerStopsIt) {
  ASSERT_OK(files_->put_file("swapped", testing::kBinDir / "echoservice"));
  start_node();
  json req = echo("svc.echo.swapped", "swapped");
  req["location"] = "nats://NEXCLIFILES/swapped";
  req["hash"] =
      hex_encode(crypto::sha256(as_bytes(testing::slurp(testing::kBinDir / "echoservice"))));
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];
  ASSERT_OK(files_->put_file("swapped", testing::kBinDir / "hostcall"));  // another program
  restart();
  json pending = restores();
  ASSERT_EQ(pending.size(), 1u) << info().dump();
  EXPECT_EQ(pending[0]["state"], "failed");
  EXPECT_NE(pending[0]["reason"].get<std::string>().find("artifact hash mismatch"),
            std::string::npos)
      << pending.dump();
  EXPECT_EQ(machines().size(), 0u);
  EXPECT_TRUE(bucket().get(key(id)));
  // Its deployer (and nobody else) can let it go.
  auto stranger = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  EXPECT_FALSE(stop_signed_by(id, "swapped", stranger)["error"].is_null());
  json stopped = stop(id, "swapped");
  EXPECT_TRUE(stopped["error"].is_null()) << stopped.dump();
  EXPECT_EQ(restores().size(), 0u);
  EXPECT_FALSE(bucket().get(key(id)));
}

}  // namespace
}  // namespace nex::node
