#include "crypto/jwt.h"

#include <gtest/gtest.h>

#include "core/clock.h"
#include "crypto/digest.h"

namespace nex::crypto {
namespace {

using nlohmann::json;

KeyPair account() { return *KeyPair::create(KeyType::kAccount); }

std::string segment(const std::string& token, int i) {
  size_t start = 0;
  for (int k = 0; k < i; ++k) start = token.find('.', start) + 1;
  return token.substr(start, token.find('.', start) - start);
}

json decode_part(const std::string& seg) {
  auto raw = base64_decode(seg, Base64::kUrlNoPad);
  return json::parse(raw->begin(), raw->end());
}

TEST(Jwt, EncodesTheNatsShape) {
  KeyPair issuer = account();
  JwtClaims c;
  c.sub = "echoservice";
  c.nats = {{"hash", "abc"}};
  const std::string token = encode_jwt(c, issuer);
  EXPECT_EQ(decode_part(segment(token, 0)), json::parse(R"({"typ":"JWT","alg":"ed25519-nkey"})"));
  json payload = decode_part(segment(token, 1));
  EXPECT_EQ(payload["iss"], issuer.public_key());
  EXPECT_EQ(payload["sub"], "echoservice");
  EXPECT_EQ(payload["nats"]["hash"], "abc");
  EXPECT_NEAR(payload["iat"].get<int64_t>(), unix_seconds_now(), 5);
  // jti = base32(SHA-512/256(claims with jti empty)).
  json blank = payload;
  blank["jti"] = "";
  EXPECT_EQ(payload["jti"], base32_encode(sha512_256(as_bytes(blank.dump()))));
  // No padding anywhere.
  EXPECT_EQ(token.find('='), std::string::npos);
}

TEST(Jwt, DecodeVerifiesAndRoundTrips) {
  KeyPair issuer = account();
  JwtClaims c;
  c.sub = "svc";
  c.name = "my service";
  c.exp = unix_seconds_now() + 60;
  const std::string token = encode_jwt(c, issuer);
  auto d = verify_jwt(token, {.issuer_type = KeyType::kAccount});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->claims.sub, "svc");
  EXPECT_EQ(d->claims.name, "my service");
  EXPECT_EQ(d->claims.iss, issuer.public_key());
  EXPECT_EQ(d->claims.exp, c.exp);
  EXPECT_FALSE(d->claims.jti.empty());
}

TEST(Jwt, TwoTokensForTheSameClaimsDifferInJtiWhenTimesDiffer) {
  KeyPair issuer = account();
  JwtClaims a;
  a.sub = "x";
  a.iat = 1000;
  JwtClaims b = a;
  b.iat = 1001;
  EXPECT_NE(decode_jwt(encode_jwt(a, issuer))->claims.jti,
            decode_jwt(encode_jwt(b, issuer))->claims.jti);
}

TEST(Jwt, RejectsTamperingAndForgery) {
  KeyPair issuer = account();
  KeyPair other = account();
  JwtClaims c;
  c.sub = "svc";
  const std::string token = encode_jwt(c, issuer);

  // Payload swapped for one claiming another subject.
  json payload = decode_part(segment(token, 1));
  payload["sub"] = "other";
  const std::string forged = segment(token, 0) + "." +
                             base64_encode(as_bytes(payload.dump()), Base64::kUrlNoPad) + "." +
                             segment(token, 2);
  auto r = decode_jwt(forged);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kPermissionDenied);

  // Claims re-signed by another key but still naming the original issuer.
  JwtClaims c2 = c;
  std::string by_other = encode_jwt(c2, other);
  json p2 = decode_part(segment(by_other, 1));
  p2["iss"] = issuer.public_key();
  const std::string impostor = segment(by_other, 0) + "." +
                               base64_encode(as_bytes(p2.dump()), Base64::kUrlNoPad) + "." +
                               segment(by_other, 2);
  EXPECT_FALSE(decode_jwt(impostor));
}

TEST(Jwt, MalformedTokensAreClearErrors) {
  KeyPair issuer = account();
  const std::string token = encode_jwt(JwtClaims{.sub = "s"}, issuer);
  const std::string h = segment(token, 0), p = segment(token, 1), s = segment(token, 2);
  struct Case {
    std::string token;
    std::string expect;
  };
  const Case cases[] = {
      {"", "three"},
      {h + "." + p, "three"},
      {token + ".x", "three"},
      {"!!!." + p + "." + s, "header is not base64url"},
      {h + ".@@@." + s, "payload is not base64url"},
      {base64_encode(as_bytes("not json"), Base64::kUrlNoPad) + "." + p + "." + s,
       "header is not a JSON object"},
      {base64_encode(as_bytes(R"({"typ":"JWT","alg":"HS256"})"), Base64::kUrlNoPad) + "." + p +
           "." + s,
       "header must be"},
      {base64_encode(as_bytes(R"({"typ":1,"alg":2})"), Base64::kUrlNoPad) + "." + p + "." + s,
       "header must be"},
      {h + "." + base64_encode(as_bytes("[1,2]"), Base64::kUrlNoPad) + "." + s,
       "payload is not a JSON object"},
      {h + "." + base64_encode(as_bytes(R"({"sub":"x"})"), Base64::kUrlNoPad) + "." + s,
       "missing 'iss'"},
      {h + "." + base64_encode(as_bytes(R"({"iss":"x","iat":"soon"})"), Base64::kUrlNoPad) + "." +
           s,
       "'iat' must be an integer"},
      {h + "." + base64_encode(as_bytes(R"({"iss":"nonsense","iat":1})"), Base64::kUrlNoPad) + "." +
           s,
       "invalid JWT"},
      {h + "." + p + ".%%%", "signature is not base64url"},
      {h + "." + p + "." + s.substr(0, 20), "signature verification failed"},
  };
  for (const auto& c : cases) {
    auto r = decode_jwt(c.token);
    ASSERT_FALSE(r) << c.token;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos)
        << "token: " << c.token << "\nerror: " << r.error().message;
  }
}

TEST(Jwt, ValidatesTimesAndIssuerType) {
  KeyPair issuer = account();
  const int64_t now = unix_seconds_now();
  auto check = [&](JwtClaims c, JwtExpectations e) { return verify_jwt(encode_jwt(c, issuer), e); };

  auto expired = check(JwtClaims{.sub = "s", .exp = now - 10}, {});
  ASSERT_FALSE(expired);
  EXPECT_NE(expired.error().message.find("expired"), std::string::npos);

  auto early = check(JwtClaims{.sub = "s", .nbf = now + 600}, {});
  ASSERT_FALSE(early);
  EXPECT_NE(early.error().message.find("not valid yet"), std::string::npos);

  auto future = check(JwtClaims{.iat = now + 600, .sub = "s"}, {});
  ASSERT_FALSE(future);
  EXPECT_NE(future.error().message.find("future"), std::string::npos);
  EXPECT_TRUE(check(JwtClaims{.iat = now + 5, .sub = "s"}, {.clock_skew_seconds = 10}));

  auto wrong_type = check(JwtClaims{.sub = "s"}, {.issuer_type = KeyType::kOperator});
  ASSERT_FALSE(wrong_type);
  EXPECT_NE(wrong_type.error().message.find("must be a operator key, got account"),
            std::string::npos);

  EXPECT_TRUE(check(JwtClaims{.sub = "s", .exp = now + 60, .nbf = now - 60},
                    {.issuer_type = KeyType::kAccount}));
}

}  // namespace
}  // namespace nex::crypto
