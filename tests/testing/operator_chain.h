// Decentralized NATS auth made by the test, as `nsc` would make it: an operator, accounts it
// signs and users they sign, all with our own nkeys and JWT code, and the nats-server config
// (operator, MEMORY resolver) that trusts them.
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "crypto/jwt.h"
#include "crypto/nkeys.h"

namespace nex::testing {

struct NatsUser {
  crypto::KeyPair key;
  std::string jwt;

  // A .creds file as `nsc` writes it: the JWT on line 2, the seed further down.
  void write_creds(const std::filesystem::path& path) const {
    std::ofstream(path) << "-----BEGIN NATS USER JWT-----\n"
                        << jwt << "\n------END NATS USER JWT------\n\n"
                        << "-----BEGIN USER NKEY SEED-----\n"
                        << key.seed() << "\n------END USER NKEY SEED------\n";
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  }
};

struct NatsAccount {
  crypto::KeyPair key;
  std::string jwt;

  // A user of this account. `permissions` holds "pub"/"sub"/"resp" claims (none: may do all);
  // a bearer user logs in with its JWT alone, no signature over the server's nonce.
  NatsUser user(const std::string& name, nlohmann::json permissions = nlohmann::json::object(),
                bool bearer = false) const {
    auto kp = *crypto::KeyPair::create(crypto::KeyType::kUser);
    nlohmann::json claims = {{"pub", nlohmann::json::object()},
                             {"sub", nlohmann::json::object()},
                             {"subs", -1},
                             {"data", -1},
                             {"payload", -1},
                             {"type", "user"},
                             {"version", 2}};
    claims.update(permissions);
    if (bearer) claims["bearer_token"] = true;
    std::string token =
        crypto::encode_jwt({.sub = kp.public_key(), .name = name, .nats = claims}, key);
    return {std::move(kp), std::move(token)};
  }
};

class OperatorChain {
 public:
  // With the system account JetStream needs (nats-server refuses JetStream without one).
  OperatorChain() {
    const std::string sys = account("SYS").key.public_key();
    op_jwt_ = crypto::encode_jwt(
        {.sub = op_.public_key(),
         .name = "op",
         .nats = {{"type", "operator"}, {"system_account", sys}, {"version", 2}}},
        op_);
    system_account_ = sys;
  }

  // An account; with `jetstream` its users may create streams, consumers, KV and object stores.
  NatsAccount account(const std::string& name, bool jetstream = false) {
    auto kp = *crypto::KeyPair::create(crypto::KeyType::kAccount);
    nlohmann::json limits = {{"subs", -1},    {"data", -1},        {"payload", -1}, {"imports", -1},
                             {"exports", -1}, {"wildcards", true}, {"conn", -1},    {"leaf", -1}};
    if (jetstream) {
      limits.update({{"mem_storage", -1},
                     {"disk_storage", -1},
                     {"streams", -1},
                     {"consumer", -1},
                     {"max_ack_pending", -1},
                     {"mem_max_stream_bytes", -1},
                     {"disk_max_stream_bytes", -1}});
    }
    std::string token =
        crypto::encode_jwt({.sub = kp.public_key(),
                            .name = name,
                            .nats = {{"limits", limits}, {"type", "account"}, {"version", 2}}},
                           op_);
    preload_.push_back(kp.public_key() + ": " + token);
    return {std::move(kp), std::move(token)};
  }

  // nats-server config lines trusting the operator and every account made so far.
  std::string server_config() const {
    std::string config = "operator: " + op_jwt_ + "\nsystem_account: " + system_account_ +
                         "\nresolver: MEMORY\nresolver_preload: {\n";
    for (const auto& line : preload_) config += "  " + line + "\n";
    return config + "}\n";
  }

 private:
  crypto::KeyPair op_ = *crypto::KeyPair::create(crypto::KeyType::kOperator);
  std::string op_jwt_;
  std::string system_account_;
  std::vector<std::string> preload_;
};

}  // namespace nex::testing
