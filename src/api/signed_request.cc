#include "api/signed_request.h"

#include "api/json_fields.h"
#include "core/clock.h"
#include "core/encoding.h"
#include "crypto/digest.h"

namespace nex::api {

using nlohmann::json;

std::string request_digest(std::string_view action, std::string_view ns, const json& body,
                           std::string_view jwt_field) {
  json request = body;
  if (request.is_object()) request.erase(std::string(jwt_field));
  const json bound = {
      {"action", std::string(action)}, {"namespace", std::string(ns)}, {"request", request}};
  return hex_encode(crypto::sha256(as_bytes(dump(bound))));
}

std::string request_fingerprint(const json& body) {
  return hex_encode(crypto::sha256(as_bytes(dump(body))));
}

void sign_request(json& body, const RequestSigning& how, const crypto::KeyPair& issuer) {
  json claims = how.claims.is_object() ? how.claims : json::object();
  claims["request_digest"] = request_digest(how.action, how.ns, body, how.jwt_field);
  body[how.jwt_field] =
      crypto::encode_jwt({.sub = how.subject, .exp = how.expires_at, .nats = claims}, issuer);
}

namespace {

Status check_issuer_type(const crypto::JwtClaims& claims, std::string_view action) {
  auto iss = crypto::decode_public_key(claims.iss);
  if (!iss) return fail(ErrorCode::kInvalidArgument, "invalid JWT issuer: " + iss.error().message);
  const bool account = iss->type == crypto::KeyType::kAccount;
  // An operator may put its nodes in lame duck; workloads are an account's business.
  const bool operator_key = iss->type == crypto::KeyType::kOperator;
  if (account || (operator_key && action == action::kLameDuck)) return {};
  return fail(ErrorCode::kPermissionDenied, "JWT issuer must be an account key (A...), got " +
                                                std::string(crypto::key_type_name(iss->type)));
}

// exp is required and at most kMaxRequestLifetimeSeconds away; the rest as validate_jwt checks.
Status check_times(const crypto::JwtClaims& claims, int64_t now) {
  NEX_RETURN_IF_ERROR(
      crypto::validate_jwt(claims, {.now = now, .clock_skew_seconds = kRequestClockSkewSeconds}));
  if (!claims.exp)
    return fail(ErrorCode::kPermissionDenied,
                "the JWT has no expiry (exp): a signed request must say until when it is valid");
  if (*claims.exp - now > kMaxRequestLifetimeSeconds)
    return fail(ErrorCode::kPermissionDenied,
                "the JWT expires more than " + std::to_string(kMaxRequestLifetimeSeconds / 86400) +
                    " days from now (exp): sign a request that expires sooner");
  if (claims.jti.empty())
    return fail(ErrorCode::kPermissionDenied,
                "the JWT has no id (jti) to tell one use from another");
  return {};
}

}  // namespace

Result<CheckedRequest> check_request(const json& body, const RequestCheck& check) {
  const std::string field = check.jwt_field;
  auto jwt_text = body.find(field);
  if (jwt_text == body.end() || !jwt_text->is_string() || jwt_text->get<std::string>().empty())
    return fail(ErrorCode::kPermissionDenied, "field '" + field + "' is required: a signed JWT");
  auto jwt = crypto::decode_jwt(jwt_text->get<std::string>());
  if (!jwt) return fail(jwt.error().code, field + ": " + jwt.error().message);
  if (auto st = check_issuer_type(jwt->claims, check.action); !st)
    return fail(st.error().code, field + ": " + st.error().message);
  const int64_t now = check.now != 0 ? check.now : unix_seconds_now();
  CheckedRequest out{.jwt = std::move(*jwt), .bound = true};
  const json& nats = out.jwt.claims.nats;
  auto digest = nats.find("request_digest");
  if (digest == nats.end() || !digest->is_string()) {
    if (!check.allow_unbound)
      return fail(ErrorCode::kPermissionDenied,
                  field +
                      " binds no request (no claim nats.request_digest): it comes from older "
                      "tooling, which this node refuses (node config allow_unbound_requests)");
    out.bound = false;
    if (check.check_times) {
      NEX_RETURN_IF_ERROR(crypto::validate_jwt(
          out.jwt.claims, {.now = now, .clock_skew_seconds = kRequestClockSkewSeconds}));
    }
  } else {
    if (digest->get<std::string>() != request_digest(check.action, check.ns, body, check.jwt_field))
      return fail(ErrorCode::kPermissionDenied,
                  field +
                      " was signed for another request: its request_digest does not match "
                      "this " +
                      std::string(check.action) +
                      " (it binds the target node, the namespace and every field of the "
                      "request)");
    if (check.check_times) {
      if (auto st = check_times(out.jwt.claims, now); !st)
        return fail(st.error().code, field + ": " + st.error().message);
    }
  }
  auto target = body.find("target_node");
  const std::string target_node =
      target != body.end() && target->is_string() ? target->get<std::string>() : "";
  if (target_node.empty() && out.bound)
    return fail(ErrorCode::kPermissionDenied,
                "field 'target_node' is required: a signed request names the node it is for");
  if (!target_node.empty() && target_node != check.node_id)
    return fail(ErrorCode::kPermissionDenied, "field 'target_node' names node " + target_node +
                                                  ", not this node (" + check.node_id + ")");
  return out;
}

}  // namespace nex::api
