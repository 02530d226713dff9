// A signed request's times at their exact boundaries, on a clock the test sets: void from its
// expiry on (the clock skew never extends it), and issued ahead of the node's clock by at most
// the skew.
#include "api/signed_request.h"

#include <gtest/gtest.h>

#include "crypto/nkeys.h"

namespace nex::api {
namespace {

using nlohmann::json;

constexpr int64_t kNow = 1'900'000'000;  // the node's clock in these tests
constexpr int64_t kSkew = kRequestClockSkewSeconds;

class RequestTimes : public ::testing::Test {
 protected:
  // A deploy for node "NODE" in "default", bound by a JWT with these times (exp kNow + 60 unless
  // given), checked at kNow.
  Result<CheckedRequest> check(crypto::JwtClaims claims) {
    json body = {{"target_node", "NODE"}, {"workload_name", "w"}};
    if (!claims.exp) claims.exp = kNow + 60;
    if (claims.iat == 0) claims.iat = kNow;
    claims.sub = "w";
    claims.nats = {
        {"request_digest", request_digest(action::kDeploy, "default", body, kWorkloadJwtField)}};
    body[kWorkloadJwtField] = crypto::encode_jwt(claims, issuer_);
    return check_request(
        body, {.action = action::kDeploy, .ns = "default", .node_id = "NODE", .now = kNow});
  }
  static std::string error_of(const Result<CheckedRequest>& r) {
    return r ? "" : r.error().message;
  }
  crypto::KeyPair issuer_ = *crypto::KeyPair::create(crypto::KeyType::kAccount);
};

TEST_F(RequestTimes, ARequestIsVoidAtItsExpiry) {
  EXPECT_NE(error_of(check({.iat = kNow - 10, .exp = kNow})).find("JWT has expired"),
            std::string::npos);
  EXPECT_TRUE(check({.iat = kNow - 10, .exp = kNow + 1}));
}

TEST_F(RequestTimes, TheClockSkewDoesNotExtendExpiry) {
  EXPECT_NE(error_of(check({.iat = kNow - 10, .exp = kNow - 1})).find("JWT has expired"),
            std::string::npos);
  EXPECT_NE(
      error_of(check({.iat = kNow - 2 * kSkew, .exp = kNow - kSkew + 1})).find("JWT has expired"),
      std::string::npos);
}

TEST_F(RequestTimes, ARequestIssuedAheadOfTheNodeByAtMostTheSkewIsAccepted) {
  EXPECT_TRUE(check({.iat = kNow + kSkew, .exp = kNow + kSkew + 60}));
  EXPECT_NE(error_of(check({.iat = kNow + kSkew + 1, .exp = kNow + kSkew + 60}))
                .find("JWT issued in the future (iat)"),
            std::string::npos);
}

TEST_F(RequestTimes, NotBeforeIsForgivenTheSkewAndNoMore) {
  EXPECT_TRUE(check({.exp = kNow + 600, .nbf = kNow + kSkew}));
  EXPECT_NE(error_of(check({.exp = kNow + 600, .nbf = kNow + kSkew + 1})).find("not valid yet"),
            std::string::npos);
}

TEST_F(RequestTimes, TheLongestLifetimeIsTheLimitAndNoMore) {
  EXPECT_TRUE(check({.exp = kNow + kMaxRequestLifetimeSeconds}));
  EXPECT_NE(error_of(check({.exp = kNow + kMaxRequestLifetimeSeconds + 1}))
                .find("expires more than 31 days from now"),
            std::string::npos);
}

}  // namespace
}  // namespace nex::api
