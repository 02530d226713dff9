// Signed control requests, tried as an attacker who captured one would: published again, sent to
// another namespace, another node or with other trigger subjects, kept until after it expired,
// or made by older tooling that binds nothing. Each is refused, and nothing changes on the node.
#include <gtest/gtest.h>

#include <fstream>

#include "api/signed_request.h"
#include "core/clock.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using testing::Collector;
using namespace std::chrono_literals;

class SignedRequests : public testing::NodeTest {
 protected:
  // The echo service as a signed deploy request, ready to send (and to capture).
  json echo_request(const std::string& subject, int64_t lifetime_s = 300) {
    return signed_deploy(
        deploy_request("echoservice", {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", subject}}),
        "default", nullptr, lifetime_s);
  }
  json send_deploy(const json& body, const std::string& ns = "default") {
    return control("$NEX.DEPLOY." + ns + "." + node_->id(), body.dump());
  }
  size_t running(const std::string& ns = "default") { return info(ns)["data"]["machines"].size(); }
  static std::string error_of(const json& reply) {
    return reply["error"].is_string() ? reply["error"].get<std::string>() : "";
  }
  // A deploy JWT with claims set by hand (times at their boundaries).
  json with_claims(json body, crypto::JwtClaims claims) {
    body.erase("workload_jwt");
    claims.sub = "echoservice";
    claims.nats = {{"request_digest", api::request_digest(api::action::kDeploy, "default", body,
                                                          api::kWorkloadJwtField)}};
    body["workload_jwt"] = crypto::encode_jwt(claims, issuer_);
    return body;
  }
};

TEST_F(SignedRequests, TheSameDeploySentAgainGetsTheFirstAnswerAndStartsNothing) {
  start_node();
  const json captured = echo_request("svc.echo.replay");
  json first = send_deploy(captured);
  ASSERT_TRUE(first["error"].is_null()) << first.dump();
  json again = send_deploy(captured);
  ASSERT_TRUE(again["error"].is_null()) << again.dump();
  EXPECT_EQ(again["data"]["id"], first["data"]["id"]);
  EXPECT_EQ(running(), 1u);
}

TEST_F(SignedRequests, AUsedDeployIsRefusedAfterTheNodeRestarts) {
  start_node();
  const json captured = echo_request("svc.echo.restarted");
  json first = send_deploy(captured);
  ASSERT_TRUE(first["error"].is_null()) << first.dump();
  ASSERT_TRUE(stop(first["data"]["id"], "echoservice")["error"].is_null());
  node_.reset();
  start_node();
  json again = send_deploy(captured);
  EXPECT_NE(error_of(again).find("was already used on this node"), std::string::npos)
      << again.dump();
  EXPECT_EQ(running(), 0u);
}

TEST_F(SignedRequests, ADeploySentToAnotherNamespaceIsRefused) {
  start_node();
  json r = send_deploy(echo_request("svc.echo.ns"), "victim2");
  EXPECT_NE(error_of(r).find("signed for another request"), std::string::npos) << r.dump();
  EXPECT_EQ(running("victim2"), 0u);
}

TEST_F(SignedRequests, ADeployWithOtherTriggerSubjectsIsRefused) {
  ASSERT_OK(files_->put_bytes("hijack.js", "(subject, payload) => payload"));
  start_node();
  json fn = signed_deploy(function_request("fn", "hijack.js", {"app.fn"}));
  json hijacked = fn;
  hijacked["trigger_subjects"] = {"hijack.>"};
  json r = send_deploy(hijacked);
  EXPECT_NE(error_of(r).find("signed for another request"), std::string::npos) << r.dump();
  EXPECT_EQ(running(), 0u);
}

TEST_F(SignedRequests, ADeploySignedForAnotherNodeIsRefused) {
  start_node();
  json body =
      deploy_request_to("NOTHISNODE", node_->xkey(), "echoservice", {{"NATS_URL", server().url()}});
  json r = send_deploy(signed_deploy(body));
  EXPECT_NE(error_of(r).find("field 'target_node' names node NOTHISNODE"), std::string::npos)
      << r.dump();
  // And one with no target at all could go anywhere: refused too.
  body.erase("target_node");
  r = send_deploy(signed_deploy(body));
  EXPECT_NE(error_of(r).find("field 'target_node' is required"), std::string::npos) << r.dump();
  EXPECT_EQ(running(), 0u);
}

TEST_F(SignedRequests, AnExpiredDeployIsRefusedAtItsExpiry) {
  start_node();
  json body = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  const int64_t now = unix_seconds_now();
  json r = send_deploy(with_claims(body, {.iat = now - 10, .exp = now}));
  EXPECT_NE(error_of(r).find("JWT has expired"), std::string::npos) << r.dump();
  EXPECT_EQ(running(), 0u);
  r = send_deploy(with_claims(body, {.iat = now - 10, .exp = now + 30}));
  EXPECT_TRUE(r["error"].is_null()) << r.dump();
}

TEST_F(SignedRequests, ADeployIssuedInTheFutureIsRefusedBeyondTheClockSkew) {
  start_node();
  json body = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  const int64_t now = unix_seconds_now();
  const int64_t skew = api::kRequestClockSkewSeconds;
  json r = send_deploy(with_claims(body, {.iat = now + skew + 5, .exp = now + 300}));
  EXPECT_NE(error_of(r).find("issued in the future"), std::string::npos) << r.dump();
  r = send_deploy(with_claims(body, {.iat = now + skew - 5, .exp = now + 300}));
  EXPECT_TRUE(r["error"].is_null()) << r.dump();
}

TEST_F(SignedRequests, ADeployWithoutExpiryOrValidForTooLongIsRefused) {
  start_node();
  json body = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  const int64_t now = unix_seconds_now();
  json r = send_deploy(with_claims(body, {.iat = now}));
  EXPECT_NE(error_of(r).find("has no expiry (exp)"), std::string::npos) << r.dump();
  r = send_deploy(
      with_claims(body, {.iat = now, .exp = now + api::kMaxRequestLifetimeSeconds + 60}));
  EXPECT_NE(error_of(r).find("expires more than 31 days from now"), std::string::npos) << r.dump();
  EXPECT_EQ(running(), 0u);
}

TEST_F(SignedRequests, UnboundRequestsOfOlderToolingAreRefusedUnlessTheConfigAllowsThem) {
  start_node();
  json body = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  body["workload_jwt"] = jwt_for("echoservice", issuer_);
  json r = send_deploy(body);
  EXPECT_NE(error_of(r).find("binds no request"), std::string::npos) << r.dump();
  EXPECT_EQ(running(), 0u);
  node_.reset();
  NodeConfig allowing;
  allowing.allow_unbound_requests = true;
  start_node(allowing);
  body = deploy_request("echoservice", {{"NATS_URL", server().url()}});
  body["workload_jwt"] = jwt_for("echoservice", issuer_);
  r = send_deploy(body);
  EXPECT_TRUE(r["error"].is_null()) << r.dump();
}

// A request id (jti) names one request: the very same request sent again gets the first answer,
// but another request carrying the same JWT (possible with an unbound one) is refused rather
// than handed the first one's answer as if it had been done.
TEST_F(SignedRequests, ADifferentRequestReusingAJtiIsRefused) {
  NodeConfig allowing;
  allowing.allow_unbound_requests = true;
  start_node(allowing);
  const std::string jwt = jwt_for("echoservice", issuer_, unix_seconds_now() + 300);
  json first = deploy_request("echoservice",
                              {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.jti1"}});
  first["workload_jwt"] = jwt;
  json other = deploy_request("echoservice",
                              {{"NATS_URL", server().url()}, {"ECHO_SUBJECT", "svc.echo.jti2"}});
  other["workload_jwt"] = jwt;
  json a = send_deploy(first);
  ASSERT_TRUE(a["error"].is_null()) << a.dump();
  json resent = send_deploy(first);
  EXPECT_EQ(resent.dump(), a.dump());
  json b = send_deploy(other);
  EXPECT_NE(error_of(b).find("already used"), std::string::npos) << b.dump();
  EXPECT_EQ(running(), 1u);
}

TEST_F(SignedRequests, AStopSignedForOneWorkloadDoesNotStopAnother) {
  start_node();
  json a = send_deploy(echo_request("svc.echo.a"));
  json b = send_deploy(echo_request("svc.echo.b"));
  ASSERT_TRUE(a["error"].is_null() && b["error"].is_null()) << a.dump() << b.dump();
  json stop_a = stop_request(node_->id(), a["data"]["id"], "echoservice", "default", issuer_);
  json retargeted = stop_a;
  retargeted["workload_id"] = b["data"]["id"];
  json r = control("$NEX.STOP.default." + node_->id(), retargeted.dump());
  EXPECT_NE(error_of(r).find("signed for another request"), std::string::npos) << r.dump();
  EXPECT_TRUE(echo_answers("svc.echo.b"));
  r = control("$NEX.STOP.default." + node_->id(), stop_a.dump());
  EXPECT_TRUE(r["error"].is_null()) << r.dump();
  EXPECT_EQ(running(), 1u);
}

TEST_F(SignedRequests, AStopSentAgainStopsNothingElse) {
  start_node();
  json a = send_deploy(echo_request("svc.echo.stop-again"));
  ASSERT_TRUE(a["error"].is_null()) << a.dump();
  json stop_a = stop_request(node_->id(), a["data"]["id"], "echoservice", "default", issuer_);
  json first = control("$NEX.STOP.default." + node_->id(), stop_a.dump());
  ASSERT_TRUE(first["error"].is_null()) << first.dump();
  json again = control("$NEX.STOP.default." + node_->id(), stop_a.dump());
  EXPECT_EQ(again.dump(), first.dump());  // the first answer, not a second stop
}

TEST_F(SignedRequests, LameDuckNeedsASignedRequestForThisNode) {
  NodeConfig c;
  auto operator_key = *crypto::KeyPair::create(crypto::KeyType::kOperator);
  c.valid_issuers = {issuer_.public_key()};
  c.operator_keys = {operator_key.public_key()};
  start_node(c);
  const std::string subject = "$NEX.LAMEDUCK." + node_->id();
  json r = control(subject, "");
  EXPECT_NE(error_of(r).find("must be signed"), std::string::npos) << r.dump();
  auto stranger = *crypto::KeyPair::create(crypto::KeyType::kAccount);
  r = control(subject, lameduck_request(&stranger).dump());
  EXPECT_NE(error_of(r).find("may not put this node in lame duck"), std::string::npos) << r.dump();
  json elsewhere = lameduck_request();
  elsewhere["target_node"] = "NOTHISNODE";
  r = control(subject, elsewhere.dump());
  EXPECT_NE(error_of(r).find("signed for another request"), std::string::npos) << r.dump();
  EXPECT_FALSE(control("$NEX.PING", "")["data"]["tags"].contains("nex.lameduck"));
  r = control(subject, lameduck_request(&operator_key).dump());
  EXPECT_TRUE(r["error"].is_null()) << r.dump();
  EXPECT_EQ(control("$NEX.PING", "")["data"]["tags"]["nex.lameduck"], "true");
}

TEST_F(SignedRequests, DeeplyNestedBodiesAreRefusedBeforeParsing) {
  start_node();
  std::string nested = R"({"a":)" + std::string(200, '[') + std::string(200, ']') + "}";
  json r = control("$NEX.DEPLOY.default." + node_->id(), nested);
  EXPECT_NE(error_of(r).find("nests objects or arrays more than 32 levels"), std::string::npos)
      << r.dump();
  EXPECT_TRUE(control("$NEX.PING." + node_->id(), "")["error"].is_null());
}

TEST_F(SignedRequests, OversizedBodiesAreRefusedEvenWhereTheServerTakesThem) {
  // A server that takes 8 MB messages, as the one the attack was made on did.
  const std::string config = state_dir_.string() + "-big.conf";
  { std::ofstream(config) << "max_payload: 8388608\n"; }
  auto big = nats::LocalNatsServer::start({.config_file = config});
  ASSERT_TRUE(big) << big.error().message;
  auto node = Node::start({.config = {.no_sandbox = true},
                           .control = {.urls = {big->url()}},
                           .state_dir = state_dir_ / "big",
                           .version = "test"});
  ASSERT_TRUE(node) << node.error().message;
  auto conn = nats::Connection::connect({.urls = {big->url()}});
  ASSERT_TRUE(conn) << conn.error().message;
  const std::string body = R"({"argv":[")" + std::string(3 << 20, 'x') + R"("]})";
  auto r = conn->request("$NEX.DEPLOY.default." + (*node)->id(), body, 10s);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_NE(error_of(json::parse(r->data())).find("more than the 1048576 a node accepts"),
            std::string::npos)
      << r->data();
  (*node)->stop();
  std::filesystem::remove(config);
}

}  // namespace
}  // namespace nex::node
