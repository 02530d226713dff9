// Signed control requests: what a deploy, stop or lame-duck request's JWT binds, so that a
// captured request cannot be sent again to another node, into another namespace, with other
// trigger subjects, or after it expired (docs/protocol-additions.md, "Signed requests").
//
// The JWT (signed by the issuer's account key) carries, besides the usual claims:
//   exp                       required; the request is void after it
//   nats.request_digest       hex SHA-256 of the canonical JSON
//                             {"action": A, "namespace": NS, "request": BODY}
//                             where BODY is the request's JSON without its JWT field, keys sorted,
//                             no whitespace, UTF-8 as is (what nlohmann::json::dump() writes).
// The body names its target node, so the digest binds the node, the namespace and everything the
// request asks for (type, artifact, environment seal, trigger subjects, limits, workload id).
// The jti (a hash of the claims) identifies one use: a node accepts each jti once until its exp.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "crypto/jwt.h"

namespace nex::api {

namespace action {
inline constexpr std::string_view kDeploy = "deploy";
inline constexpr std::string_view kStop = "stop";
inline constexpr std::string_view kLameDuck = "lameduck";
}  // namespace action

// The JWT field of each request: deploys and stops keep Nex's "workload_jwt"; lame duck is ours.
inline constexpr const char* kWorkloadJwtField = "workload_jwt";
inline constexpr const char* kRequestJwtField = "request_jwt";

// How long the CLI's direct requests stay valid, and the longest any request may be valid for
// (a durable deploy waits in a stream for a node that may be offline for weeks).
inline constexpr int64_t kDirectRequestLifetimeSeconds = 5 * 60;
inline constexpr int64_t kMaxRequestLifetimeSeconds = 31 * 24 * 3600;
// How far a signer's clock may run ahead of the node's (iat, nbf); expiry is never extended.
inline constexpr int64_t kRequestClockSkewSeconds = 60;

// The digest a JWT must carry for `body` (its JWT field, named `jwt_field`, is left out).
std::string request_digest(std::string_view action, std::string_view ns, const nlohmann::json& body,
                           std::string_view jwt_field);

// Hex SHA-256 of the whole request, its JWT included, as canonical JSON: tells the very same
// request sent again from another request that carries the same JWT.
std::string request_fingerprint(const nlohmann::json& body);

struct RequestSigning {
  std::string_view action;
  std::string ns;
  std::string subject;     // the JWT's sub: the workload name, or the node id for lame duck
  int64_t expires_at = 0;  // unix seconds
  nlohmann::json claims = nlohmann::json::object();  // more `nats` claims (type, hash)
  const char* jwt_field = kWorkloadJwtField;
};
// Sets body[jwt_field] to a JWT of `issuer` bound to the rest of `body`.
void sign_request(nlohmann::json& body, const RequestSigning& how, const crypto::KeyPair& issuer);

struct RequestCheck {
  std::string_view action;
  std::string ns;
  std::string node_id;  // the node checking: the body's target_node must name it
  const char* jwt_field = kWorkloadJwtField;
  bool allow_unbound = false;  // accept JWTs of older tooling that bind nothing
  bool check_times = true;     // false for a request the node itself accepted earlier (restore)
  int64_t now = 0;             // unix seconds; 0: the current time
};

struct CheckedRequest {
  crypto::DecodedJwt jwt;
  bool bound = false;  // false only for an unbound request let through by allow_unbound
};

// Verifies the JWT's signature, that its issuer is an account key, its times, that it binds this
// very request (or is let through as unbound), and that target_node names this node. Errors name
// the field and say what is expected.
Result<CheckedRequest> check_request(const nlohmann::json& body, const RequestCheck& check);

}  // namespace nex::api
