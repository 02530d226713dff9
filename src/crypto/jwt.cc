#include "crypto/jwt.h"

#include "core/clock.h"
#include "crypto/digest.h"

namespace nex::crypto {
namespace {

using nlohmann::json;

constexpr std::string_view kHeader = R"({"typ":"JWT","alg":"ed25519-nkey"})";

json claims_to_json(const JwtClaims& c) {
  json j = json::object();
  j["jti"] = c.jti;
  j["iat"] = c.iat;
  j["iss"] = c.iss;
  if (!c.name.empty()) j["name"] = c.name;
  j["sub"] = c.sub;
  if (c.exp) j["exp"] = *c.exp;
  if (c.nbf) j["nbf"] = *c.nbf;
  if (!c.nats.is_null() && !c.nats.empty()) j["nats"] = c.nats;
  return j;
}

Result<int64_t> int_claim(const json& payload, const char* name) {
  const auto& v = *payload.find(name);
  if (!v.is_number_integer()) {
    return fail(ErrorCode::kInvalidArgument,
                std::string("invalid JWT: claim '") + name + "' must be an integer (unix seconds)");
  }
  return v.get<int64_t>();
}

Result<std::string> string_claim(const json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end()) return std::string();
  if (!it->is_string()) {
    return fail(ErrorCode::kInvalidArgument,
                std::string("invalid JWT: claim '") + name + "' must be a string");
  }
  return it->get<std::string>();
}

Result<JwtClaims> parse_claims(const json& payload) {
  if (!payload.is_object())
    return fail(ErrorCode::kInvalidArgument, "invalid JWT: claims are not an object");
  JwtClaims c;
  for (auto [field, name] :
       {std::pair{&c.jti, "jti"}, {&c.iss, "iss"}, {&c.sub, "sub"}, {&c.name, "name"}}) {
    auto v = string_claim(payload, name);
    if (!v) return fail(v.error());
    *field = std::move(*v);
  }
  if (payload.contains("iat")) {
    auto v = int_claim(payload, "iat");
    if (!v) return fail(v.error());
    c.iat = *v;
  }
  for (auto [field, name] : {std::pair{&c.exp, "exp"}, {&c.nbf, "nbf"}}) {
    if (payload.contains(name)) {
      auto v = int_claim(payload, name);
      if (!v) return fail(v.error());
      *field = *v;
    }
  }
  if (auto it = payload.find("nats"); it != payload.end()) {
    if (!it->is_object())
      return fail(ErrorCode::kInvalidArgument, "invalid JWT: claim 'nats' must be an object");
    c.nats = *it;
  }
  return c;
}

Result<json> decode_segment(std::string_view segment, const char* what) {
  auto raw = base64_decode(segment, Base64::kUrlNoPad);
  if (!raw) raw = base64_decode(segment, Base64::kUrl);  // tolerate padded encoders
  if (!raw)
    return fail(ErrorCode::kInvalidArgument,
                std::string("invalid JWT: ") + what + " is not base64url");
  json j = json::parse(raw->begin(), raw->end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(ErrorCode::kInvalidArgument,
                std::string("invalid JWT: ") + what + " is not a JSON object");
  }
  return j;
}

}  // namespace

static std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string encode_jwt(JwtClaims claims, const KeyPair& issuer) {
  claims.iss = issuer.public_key();
  if (claims.iat == 0) claims.iat = unix_seconds_now();
  claims.jti.clear();
  // jti = base32(SHA-512/256(claims with an empty jti)), as nats-io/jwt does.
  claims.jti = base32_encode(sha512_256(as_bytes(dump(claims_to_json(claims)))));
  const std::string signing_input =
      base64_encode(as_bytes(kHeader), Base64::kUrlNoPad) + "." +
      base64_encode(as_bytes(dump(claims_to_json(claims))), Base64::kUrlNoPad);
  const Signature sig = issuer.sign(as_bytes(signing_input));
  return signing_input + "." + base64_encode(sig, Base64::kUrlNoPad);
}

Result<DecodedJwt> decode_jwt(std::string_view token) {
  const size_t dot1 = token.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return fail(ErrorCode::kInvalidArgument, "invalid JWT: expected three dot-separated segments");
  }
  auto header = decode_segment(token.substr(0, dot1), "header");
  if (!header) return fail(header.error());
  auto typ = string_claim(*header, "typ");
  auto alg = string_claim(*header, "alg");
  if (!typ || !alg || *typ != "JWT" || (*alg != "ed25519-nkey" && *alg != "ed25519")) {
    return fail(ErrorCode::kInvalidArgument,
                "invalid JWT: header must be {\"typ\":\"JWT\",\"alg\":\"ed25519-nkey\"}");
  }
  auto payload = decode_segment(token.substr(dot1 + 1, dot2 - dot1 - 1), "payload");
  if (!payload) return fail(payload.error());
  auto claims = parse_claims(*payload);
  if (!claims) return fail(claims.error());
  if (claims->iss.empty())
    return fail(ErrorCode::kInvalidArgument, "invalid JWT: missing 'iss' claim");
  auto sig = base64_decode(token.substr(dot2 + 1), Base64::kUrlNoPad);
  if (!sig) sig = base64_decode(token.substr(dot2 + 1), Base64::kUrl);
  if (!sig) return fail(ErrorCode::kInvalidArgument, "invalid JWT: signature is not base64url");
  if (auto st = verify(claims->iss, as_bytes(token.substr(0, dot2)), *sig); !st) {
    return fail(st.error().code, "invalid JWT: " + st.error().message);
  }
  return DecodedJwt{std::move(*claims), std::move(*payload)};
}

Status validate_jwt(const JwtClaims& c, const JwtExpectations& expect) {
  const int64_t now = expect.now != 0 ? expect.now : unix_seconds_now();
  const int64_t skew = expect.clock_skew_seconds;
  if (c.iat == 0) return fail(ErrorCode::kInvalidArgument, "invalid JWT: missing 'iat' claim");
  if (c.iat > now + skew)
    return fail(ErrorCode::kPermissionDenied, "JWT issued in the future (iat)");
  // The skew forgives a signer's clock running ahead (iat, nbf); expiry is never extended.
  if (c.exp && *c.exp <= now) return fail(ErrorCode::kPermissionDenied, "JWT has expired (exp)");
  if (c.nbf && *c.nbf > now + skew)
    return fail(ErrorCode::kPermissionDenied, "JWT is not valid yet (nbf)");
  if (expect.issuer_type) {
    auto iss = decode_public_key(c.iss);
    if (!iss)
      return fail(ErrorCode::kInvalidArgument, "invalid JWT issuer: " + iss.error().message);
    if (iss->type != *expect.issuer_type) {
      return fail(ErrorCode::kPermissionDenied,
                  "JWT issuer must be a " + std::string(key_type_name(*expect.issuer_type)) +
                      " key, got " + std::string(key_type_name(iss->type)));
    }
  }
  return {};
}

Result<DecodedJwt> verify_jwt(std::string_view token, const JwtExpectations& expect) {
  auto decoded = decode_jwt(token);
  if (!decoded) return decoded;
  if (auto st = validate_jwt(decoded->claims, expect); !st) return fail(st.error());
  return decoded;
}

}  // namespace nex::crypto
