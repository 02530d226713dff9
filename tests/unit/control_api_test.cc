#include <gtest/gtest.h>

#include "api/agent.h"
#include "api/control.h"
#include "api/events.h"

namespace nex::api {
namespace {

constexpr const char* kValid = R"({"argv":["-v"],"description":"d","type":"native",
  "location":"nats://NEXCLIFILES/echoservice","essential":true,"workload_jwt":"a.b.c",
  "environment":"eGt2MQ==","sender_public_key":"XABC","target_node":"NABC","trigger_subjects":[],
  "hash":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
  "workload_name":"echoservice"})";

// `replace` is ours: sent only when asked for, so requests that replace nothing are what Nex
// tooling sends; a non-boolean is refused naming the field.
TEST(DeployRequest, ReplaceIsSentOnlyWhenAskedFor) {
  auto r = parse_deploy_request(kValid);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_FALSE(r->replace);
  EXPECT_FALSE(to_json(*r).contains("replace"));
  r->replace = true;
  auto again = parse_deploy_request(to_json(*r).dump());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->replace);
  nlohmann::json bad = nlohmann::json::parse(kValid);
  bad["replace"] = "yes";
  auto refused = parse_deploy_request(bad.dump());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("'replace'"), std::string::npos)
      << refused.error().message;
}

TEST(DeployRequest, ParsesTheWireShape) {
  auto r = parse_deploy_request(kValid);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->argv, std::vector<std::string>{"-v"});
  EXPECT_EQ(r->type, WorkloadType::kNative);
  EXPECT_EQ(r->location.bucket, "NEXCLIFILES");
  EXPECT_EQ(r->location.key, "echoservice");
  EXPECT_TRUE(r->essential);
  EXPECT_EQ(r->workload_name, "echoservice");
  // Round trip through the canonical form.
  auto again = parse_deploy_request(to_json(*r).dump());
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(to_json(*again), to_json(*r));
}

TEST(DeployRequest, AcceptsGoMarshalledUrlLocation) {
  auto j = nlohmann::json::parse(kValid);
  j["location"] = {{"Scheme", "nats"},  {"Opaque", ""},           {"User", nullptr},
                   {"Host", "MYFILES"}, {"Path", "/echoservice"}, {"RawPath", ""},
                   {"RawQuery", ""},    {"Fragment", ""}};
  auto r = parse_deploy_request(j.dump());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->location.to_string(), "nats://MYFILES/echoservice");
}

TEST(DeployRequest, BadInputNamesTheField) {
  auto with = [](const char* field, nlohmann::json value) {
    auto j = nlohmann::json::parse(kValid);
    if (value.is_discarded()) {
      j.erase(field);
    } else {
      j[field] = value;
    }
    return parse_deploy_request(j.dump());
  };
  const nlohmann::json removed = nlohmann::json(nlohmann::json::value_t::discarded);
  struct Case {
    const char* field;
    nlohmann::json value;
    const char* expect;
  } cases[] = {
      {"argv", "not-a-list", "field 'argv' must be an array of strings"},
      {"argv", {1, 2}, "field 'argv' must be an array of strings"},
      {"argv", {"-v", std::string("a\0b", 3)}, "field 'argv[1]' holds a NUL byte"},
      {"essential", "yes", "field 'essential' must be true or false"},
      {"location", removed, "field 'location' is required"},
      {"location", "http://x/y", "field 'location' must look like nats://BUCKET/key"},
      {"location", "nats://bucket-only", "field 'location' must look like nats://BUCKET/key"},
      {"location", 42, "field 'location' must be a string"},
      {"workload_jwt", removed, "field 'workload_jwt' is required"},
      {"sender_public_key", removed, "field 'sender_public_key' is required"},
      {"type", "python", "unknown workload type 'python'"},
      {"retry_count", "three", "field 'retry_count' must be an integer"},
      {"hash", "xyz", "field 'hash' must be the hex SHA-256"},
      {"workload_name", "has space", "must match ^[a-zA-Z0-9_-]+$"},
      {"host_services", "x", "field 'host_services' must be an object"},
      {"trigger_subjects",
       {"fn.echo", ""},
       "field 'trigger_subjects[1]' '' is not a valid NATS subject"},
      {"trigger_subjects",
       {"a b"},
       "field 'trigger_subjects[0]' 'a b' is not a valid NATS subject"},
      {"function_limits",
       {{"isolation", "realm"}},
       "field 'isolation' must be \"invocation\" or \"workload\""},
      {"function_limits",
       {{"isolation", "workload"}},  // kValid is a native service
       "'function_limits.isolation' \"workload\" is for JavaScript (v8) functions only"},
  };
  for (const auto& c : cases) {
    auto r = with(c.field, c.value);
    ASSERT_FALSE(r) << c.field;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos)
        << c.field << ": " << r.error().message;
  }
  auto not_json = parse_deploy_request("{nope");
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error().message, "deploy request is not valid JSON");
  EXPECT_FALSE(parse_deploy_request("[]"));
}

// The environment arrives sealed, so it is checked apart from the request, once opened.
TEST(DeployRequest, EnvironmentKeysAndValuesMustBeUsable) {
  EXPECT_TRUE(check_environment({}));
  EXPECT_TRUE(check_environment({{"NATS_URL", "nats://x"}, {"EMPTY", ""}, {"EQ", "a=b"}}));
  struct Case {
    std::map<std::string, std::string> env;
    const char* expect;
  } cases[] = {
      {{{"X", std::string("a\0b", 3)}}, "environment: the value of \"X\" holds a NUL byte"},
      {{{std::string("X\0Y", 3), "1"}}, "environment: key \"X\\u0000Y\" holds a NUL byte"},
      {{{"A=B", "1"}}, "environment: key \"A=B\" holds '='"},
      {{{"", "1"}}, "environment: a key is empty"},
  };
  for (const auto& c : cases) {
    auto st = check_environment(c.env);
    ASSERT_FALSE(st) << c.expect;
    EXPECT_NE(st.error().message.find(c.expect), std::string::npos) << st.error().message;
  }
}

TEST(StopRequest, RequiresIdAndJwt) {
  EXPECT_TRUE(parse_stop_request(R"({"workload_id":"x","workload_jwt":"a.b.c"})"));
  auto r = parse_stop_request(R"({"workload_jwt":"a.b.c"})");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("'workload_id' is required"), std::string::npos);
}

TEST(Envelope, MatchesNex) {
  EXPECT_EQ(nlohmann::json::parse(envelope("ping", {{"node_id", "N"}})),
            nlohmann::json::parse(
                R"({"type":"io.nats.nex.v1.ping_response","data":{"node_id":"N"},"error":null})"));
  EXPECT_EQ(
      nlohmann::json::parse(envelope_error("run", "nope")),
      nlohmann::json::parse(R"({"type":"io.nats.nex.v1.run_response","data":"","error":"nope"})"));
}

TEST(Uptime, FormatsLikeGoDurations) {
  EXPECT_EQ(format_uptime(0), "0s");
  EXPECT_EQ(format_uptime(61), "1m1s");
  EXPECT_EQ(format_uptime(3723), "1h2m3s");
  EXPECT_EQ(format_uptime(90061), "1d1h1m1s");
}

// The agent's invocation reports reach the node as one JSON batch; the node reads them as
// untrusted input.
TEST(InvocationBatch, RoundTripsAnyTextAndRefusesWhatIsNotABatch) {
  const std::vector<InvocationReport> batch = {
      {.trigger_subject = "fn.\"odd\"", .elapsed_nanos = 1234},
      {.trigger_subject = "fn.fail", .elapsed_nanos = 5, .error = "Error: \"boom\"\n\tat x"},
      {.trigger_subject = "fn.bytes", .elapsed_nanos = 7, .error = std::string("bad \xff utf-8")},
  };
  auto back = parse_invocation_batch(invocation_batch_json(batch));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->size(), 3u);
  EXPECT_EQ((*back)[0].trigger_subject, "fn.\"odd\"");
  EXPECT_EQ((*back)[0].elapsed_nanos, 1234);
  EXPECT_FALSE((*back)[0].error);
  EXPECT_EQ((*back)[1].error, "Error: \"boom\"\n\tat x");
  EXPECT_EQ((*back)[2].error, "bad \xEF\xBF\xBD utf-8");  // replaced, not a broken batch
  EXPECT_EQ(invocation_batch_json({}), "[]");

  for (const char* bad : {"", "{}", "[1]", R"([{"elapsed_nanos":1}])",
                          R"([{"trigger_subject":"a","elapsed_nanos":"1"}])",
                          R"([{"trigger_subject":"a","error":7}])"}) {
    EXPECT_FALSE(parse_invocation_batch(bad)) << bad;
  }
  auto refused = parse_invocation_batch(R"([{"trigger_subject":"a","elapsed_nanos":1.5}])");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("elapsed_nanos"), std::string::npos)
      << refused.error().message;
}

// Events are written out by hand (they are on the function hot path): they must still be the
// CloudEvents JSON a consumer parses, whatever the strings hold.
TEST(CloudEvent, IsStructuredJsonWithAFreshIdAndTheNamespaceWhenGiven) {
  const nlohmann::json data = {{"workload_name", "fn"}, {"error", "a \"quote\"\n\xff"}};
  const auto ev = nlohmann::json::parse(cloud_event("N\"src", "function_exec_failed", data, "ns1"));
  EXPECT_EQ(ev["specversion"], "1.0");
  EXPECT_EQ(ev["source"], "N\"src");
  EXPECT_EQ(ev["type"], "function_exec_failed");
  EXPECT_EQ(ev["datacontenttype"], "application/json");
  EXPECT_EQ(ev["namespace"], "ns1");
  EXPECT_EQ(ev["data"]["workload_name"], "fn");
  EXPECT_EQ(ev["data"]["error"], "a \"quote\"\n\xEF\xBF\xBD");
  const std::string time = ev["time"];
  EXPECT_EQ(time.size(), std::string("2026-11-22T10:04:05.123456789Z").size()) << time;
  EXPECT_EQ(time.back(), 'Z') << time;

  const auto other = nlohmann::json::parse(cloud_event("N", "heartbeat", nlohmann::json::object()));
  EXPECT_FALSE(other.contains("namespace"));
  EXPECT_NE(other["id"], ev["id"]);
  EXPECT_FALSE(std::string(other["id"]).empty());
}

}  // namespace
}  // namespace nex::api
