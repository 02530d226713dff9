// What a workload can reach through host services and triggers, tried as an attacker would:
// a function (JavaScript, tests/fixtures/js/host_services.js) and a native service
// (examples/hostservices-native/hostcall.c) aim at the node's own state in JetStream, at other
// clients' inboxes and at the server's API. Each attempt is refused by the one subject policy
// (api::SubjectPolicy), and nothing changes: no kept workload planted, no node record replaced,
// no artifact swapped.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "nats/key_value.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Collector;
namespace fs = std::filesystem;

std::string fixture(const char* rel) {
  std::ifstream in(fs::path(NEX_SOURCE_DIR) / rel, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class WorkloadReachTest : public testing::NodeTest {
 protected:
  void start(NodeConfig config = {}) {
    ASSERT_OK(files_->put_bytes("hs.js", fixture("tests/fixtures/js/host_services.js")));
    config.node_name = "reach";
    start_node(config);
    json r = deploy(function_request("hsjs", "hs.js", {"hs.js"}));
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
  }

  json js(const json& op) {
    auto r = conn_->request("hs.js", op.dump(), 15s);
    if (!r) return {{"transport_error", r.error().message}};
    if (auto e = r->header("Nats-Service-Error")) return {{"error", *e}};
    return json::parse(r->data());
  }

  // Publishes `value` on `subject` from the function; the refusal, or "" when it went out.
  std::string publish(const std::string& subject, const std::string& value = "x") {
    json r = js({{"op", "pub"}, {"subject", subject}, {"value", value}});
    return r.value("error", "");
  }

  // The keys of KV bucket `bucket`, sorted.
  std::vector<std::string> keys(const std::string& bucket) {
    auto kv = nats::KeyValue::bind(*js_, bucket);
    if (!kv) return {"<no bucket: " + kv.error().message + ">"};
    auto k = kv->keys();
    if (!k) return {};
    std::sort(k->begin(), k->end());
    return *k;
  }
};

TEST_F(WorkloadReachTest, AFunctionCannotWriteTheNodesBuckets) {
  start();
  const auto kept = keys("NEX_NODE_WORKLOADS");
  const auto nodes = keys("NEX_NODES");
  ASSERT_EQ(nodes, std::vector<std::string>{"reach"});
  auto record = nats::KeyValue::bind(*js_, "NEX_NODES")->get("reach");
  ASSERT_TRUE(record);

  const json planted = {{"id", "planted"}, {"namespace", "victim"}, {"request", json::object()}};
  for (const std::string& subject :
       {"$KV.NEX_NODE_WORKLOADS." + node_->id() + ".planted", std::string("$KV.NEX_NODES.reach"),
        std::string("$O.NEXCLIFILES.C.abc"), std::string("$O.NEXCLIFILES.M.ZWNobw=="),
        std::string("$JS.API.STREAM.DELETE.KV_NEX_NODES"), std::string("$SYS.REQ.SERVER.PING"),
        std::string("$NEX.DEPLOY.default"), std::string("$SRV.PING"),
        std::string("_INBOX.someone.else"), std::string("_R_.x")}) {
    const std::string why = publish(subject, planted.dump());
    EXPECT_NE(why.find("'" + subject + "' is reserved"), std::string::npos)
        << subject << " -> " << why;
  }
  EXPECT_EQ(keys("NEX_NODE_WORKLOADS"), kept);
  EXPECT_EQ(keys("NEX_NODES"), nodes);
  auto after = nats::KeyValue::bind(*js_, "NEX_NODES")->get("reach");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->value, record->value);
  EXPECT_EQ(after->revision, record->revision);
  EXPECT_EQ(info()["data"]["machines"].size(), 1u);
  // A request (not only a publish) is refused the same way.
  json req = js({{"op", "req"}, {"subject", "$JS.API.INFO"}, {"value", ""}});
  EXPECT_NE(req.value("error", "").find("is reserved"), std::string::npos) << req.dump();
  json many = js({{"op", "reqmany"}, {"subject", "$SRV.PING"}, {"value", ""}});
  EXPECT_NE(many.value("error", "").find("is reserved"), std::string::npos) << many.dump();
  // Ordinary subjects still go out.
  Collector news(*conn_, "news.>");
  EXPECT_EQ(publish("news.today", "it rained"), "");
  EXPECT_TRUE(news.wait_for("it rained"));
}

TEST_F(WorkloadReachTest, TriggerSubjectsOutsideTheWorkloadsOwnSpaceAreRefused) {
  start();
  for (const char* subject :
       {"_INBOX.>", "$KV.>", "$O.>", "$SRV.>", "*", ">", "*.x", "$JS.API.>", "_R_.>"}) {
    json r = deploy(function_request("grab", "hs.js", {subject}));
    ASSERT_FALSE(r["error"].is_null()) << subject << " was accepted";
    const std::string e = r["error"].get<std::string>();
    EXPECT_NE(e.find("trigger subject '" + std::string(subject) + "' is reserved"),
              std::string::npos)
        << subject << " -> " << e;
  }
  EXPECT_EQ(info()["data"]["machines"].size(), 1u) << "a refused deploy left something running";
}

TEST_F(WorkloadReachTest, AGrantOpensOnlyWhatItNames) {
  NodeConfig config;
  auto policy = api::SubjectPolicy::with_grants({"$SRV.>"});
  ASSERT_TRUE(policy);
  config.subject_policy = *policy;
  config.host_services_settings.messaging.policy = *policy;
  start(config);
  json ok = deploy(function_request("discovery", "hs.js", {"$SRV.PING.nexdemo"}));
  EXPECT_TRUE(ok["error"].is_null()) << ok.dump();
  EXPECT_EQ(publish("$SRV.PING"), "");
  EXPECT_NE(publish("$KV.NEX_NODES.reach").find("is reserved"), std::string::npos);
}

// A native service calls the same messaging service over its RPC, from its own process: the
// policy holds where the call is served, whatever the caller.
TEST_F(WorkloadReachTest, ANativeServiceCannotWriteTheNodesBuckets) {
  start();
  const auto kept = keys("NEX_NODE_WORKLOADS");
  ASSERT_OK(files_->put_file("hostcall", testing::kBinDir / "hostcall"));
  Collector logs(*conn_, "$NEX.logs.default.*.hostcall.*");
  json req = deploy_request("hostcall");
  req["location"] = "nats://NEXCLIFILES/hostcall";
  req["argv"] = {"messaging",
                 "publish",
                 "$KV.NEX_NODE_WORKLOADS." + node_->id() + ".planted",
                 "{}",
                 "messaging",
                 "publish",
                 "$KV.NEX_NODES.reach",
                 "{}"};
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  EXPECT_TRUE(logs.wait_for("$KV.NEX_NODE_WORKLOADS." + node_->id() + ".planted' is reserved"));
  EXPECT_TRUE(logs.wait_for("'$KV.NEX_NODES.reach' is reserved"));
  EXPECT_EQ(keys("NEX_NODE_WORKLOADS").size(), kept.size() + 1) << "only hostcall's own entry";
}

}  // namespace
}  // namespace nex::node
