#include "triggers/route.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "crypto/jwt.h"
#include "sandbox/loopback_forward.h"

namespace nex::triggers {

namespace {

// The user JWT of a .creds file: the line after its BEGIN marker.
Result<std::string> creds_jwt(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return fail(ErrorCode::kNotFound,
                "cannot read the creds file " + path + ": " + std::strerror(errno));
  for (std::string line; std::getline(in, line);) {
    if (line.find("BEGIN NATS USER JWT") == std::string::npos) continue;
    std::string jwt;
    if (std::getline(in, jwt)) return jwt;
  }
  return fail(ErrorCode::kInvalidArgument, "the creds file " + path + " holds no user JWT");
}

}  // namespace

Result<std::optional<TriggerCredentials>> TriggerCredentials::load(
    const RouteConfig& config, const nats::ConnectOptions& control) {
  if (config.trigger_signing_key_file.empty()) return std::optional<TriggerCredentials>();
  const std::string field = "trigger_signing_key_file " + config.trigger_signing_key_file.string();
  std::ifstream in(config.trigger_signing_key_file);
  std::string seed;
  if (!in || !(in >> seed)) return fail(ErrorCode::kNotFound, field + ": cannot be read");
  auto key = crypto::KeyPair::from_seed(seed);
  if (!key || key->type() != crypto::KeyType::kAccount)
    return fail(ErrorCode::kInvalidArgument, field + ": must hold an account seed (SA...)");
  if (control.creds_file.empty()) {
    return fail(ErrorCode::kInvalidArgument,
                field + ": needs the node to log in with a creds file (operator mode)");
  }
  auto jwt = creds_jwt(control.creds_file);
  if (!jwt) return fail(jwt.error().wrap(field));
  auto decoded = crypto::decode_jwt(*jwt);
  if (!decoded) return fail(decoded.error().wrap(field + ": the node's user JWT"));
  // A user signed by an account's signing key names the account in issuer_account.
  std::string account = decoded->claims.iss;
  if (auto it = decoded->claims.nats.find("issuer_account");
      it != decoded->claims.nats.end() && it->is_string() && !it->get<std::string>().empty())
    account = it->get<std::string>();
  return std::optional<TriggerCredentials>(TriggerCredentials(*key, account));
}

TriggerCredentials::User TriggerCredentials::sign(const std::string& name,
                                                  const nlohmann::json& permissions) const {
  auto user = *crypto::KeyPair::create(crypto::KeyType::kUser);
  nlohmann::json claims = {
      {"subs", -1}, {"data", -1}, {"payload", -1}, {"type", "user"}, {"version", 2}};
  claims.update(permissions);
  if (signing_key_.public_key() != account_) claims["issuer_account"] = account_;
  std::string jwt =
      crypto::encode_jwt({.sub = user.public_key(), .name = name, .nats = claims}, signing_key_);
  return {std::move(jwt), user.seed()};
}

TriggerCredentials::User TriggerCredentials::mint(const std::string& workload_id,
                                                  const std::vector<std::string>& subjects,
                                                  std::chrono::milliseconds answer_window) const {
  return sign(
      "nex triggers " + workload_id,
      {{"sub", {{"allow", subjects}}},
       {"pub", {{"deny", {">"}}}},  // only answers, which "resp" allows
       {"resp",
        {{"max", 1},
         {"ttl", std::chrono::duration_cast<std::chrono::nanoseconds>(answer_window).count()}}},
       {"subs", static_cast<int64_t>(subjects.size())}});
}

std::chrono::milliseconds answer_window(const api::FunctionLimitsConfig& limits) {
  const int64_t timeout_ms = limits.timeout_ms ? limits.timeout_ms : api::kDefaultFunctionTimeoutMs;
  return std::chrono::milliseconds(timeout_ms) + std::chrono::seconds(30);
}

namespace {

// The function's own login, from its deploy environment: nullopt without NATS_URL.
std::optional<DirectTriggers> own_login_triggers(
    const std::map<std::string, std::string>& environment, bool sandboxed) {
  DirectTriggers out{.urls = sandbox::nats_urls(environment),
                     .login = "with the NATS login its deployer gave it (NATS_URL"};
  if (out.urls.empty()) return std::nullopt;
  if (auto jwt = environment.find("NATS_JWT"); jwt != environment.end() && !jwt->second.empty()) {
    out.user.jwt = jwt->second;  // a bearer user's: there is no seed to sign with
    out.login += ", NATS_JWT";
  }
  out.login += ")";
  if (sandboxed) out.loopback_ports = sandbox::loopback_nats_ports(environment);
  return out;
}

}  // namespace

std::optional<DirectTriggers> direct_triggers(
    const RouteConfig& config, const nats::ConnectOptions& c, bool sandboxed,
    const TriggerCredentials* credentials, const std::string& workload_id,
    const std::vector<std::string>& subjects, std::chrono::milliseconds answer_window,
    const std::map<std::string, std::string>& environment) {
  if (config.function_triggers != "direct") return std::nullopt;
  if (auto own = own_login_triggers(environment, sandboxed)) return own;
  if (c.tls) return std::nullopt;
  const bool needs_credentials = !c.user.empty() || !c.password.empty() || !c.token.empty() ||
                                 !c.nkey_seed.empty() || !c.creds_file.empty();
  DirectTriggers out{.urls = c.urls, .login = "with no credentials"};
  if (needs_credentials || sandboxed) {
    // Never the node's own credentials, and never an unrestricted login from inside a sandbox.
    if (!credentials || c.creds_file.empty()) return std::nullopt;
    out.user = credentials->mint(workload_id, subjects, answer_window);
    out.login = "as a user the node signed that may only subscribe to them and answer";
  }
  if (sandboxed) {
    for (const auto& url : c.urls) {
      auto port = sandbox::loopback_port(url);
      if (!port) return std::nullopt;  // a sandbox reaches the host's loopback only
      out.loopback_ports.push_back(*port);
    }
  }
  return out;
}

}  // namespace nex::triggers
