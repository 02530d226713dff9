// NATS JWTs (nats-io/jwt v2 shape, docs/wire.md "NATS formats"): header.payload.signature, each
// base64url without padding, signed with Ed25519 by the issuer's nkey. Nex signs workload
// requests with them.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "crypto/nkeys.h"

namespace nex::crypto {

struct JwtClaims {
  std::string jti;
  int64_t iat = 0;  // unix seconds
  std::string iss;  // issuer public nkey
  std::string sub;
  std::string name;
  std::optional<int64_t> exp;
  std::optional<int64_t> nbf;
  nlohmann::json nats = nlohmann::json::object();  // type-specific claims
};

// Fills iss (from the key), iat (now, unless set) and jti, then signs.
std::string encode_jwt(JwtClaims claims, const KeyPair& issuer);

struct DecodedJwt {
  JwtClaims claims;
  nlohmann::json payload;  // every claim, including ones JwtClaims does not name
};

// Checks the structure, the header, and the signature against the `iss` claim. Does not check
// times or the issuer's type: see validate_jwt.
Result<DecodedJwt> decode_jwt(std::string_view token);

struct JwtExpectations {
  int64_t now = 0;  // unix seconds; 0 means the current time
  std::optional<KeyType> issuer_type;
  int64_t clock_skew_seconds = 0;
};

// exp must be in the future, nbf and iat not in the future (beyond the allowed skew), iat
// present, and iss of the expected type.
Status validate_jwt(const JwtClaims& claims, const JwtExpectations& expect);

// decode_jwt + validate_jwt.
Result<DecodedJwt> verify_jwt(std::string_view token, const JwtExpectations& expect);

}  // namespace nex::crypto
