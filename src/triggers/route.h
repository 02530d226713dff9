// How a function's triggers reach its agent. Directly when possible: the agent subscribes to the
// trigger subjects on the control NATS and answers callers itself, with no hop through the node.
// Otherwise the node relays them (TriggerRelay).
//
// Direct needs the agent to reach NATS without the node's own credentials, which it never hands
// out:
// - the function's own login, which its deployer gave it in its sealed environment as a native
//   service gets one (NATS_URL, with USER:PASSWORD@ or TOKEN@ in it, and NATS_JWT for a bearer
//   user): the agent subscribes there as that user, with what that user may do;
// - a control NATS that needs no credentials, for an unsandboxed agent; or
// - operator mode with `trigger_signing_key_file`: the node signs, per function, a user JWT that
//   may only subscribe to that function's trigger subjects and publish each answer (one reply
//   per request).
// A sandboxed agent reaches a NATS on the host's loopback through the sandbox's forwarder, which
// exposes that port and nothing else of the host.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/control.h"
#include "core/error.h"
#include "crypto/nkeys.h"
#include "nats/connection.h"

namespace nex::triggers {

// What the node's configuration says about trigger routes (node::NodeConfig holds these fields
// by deriving from this, so the routes read them without knowing the node).
struct RouteConfig {
  // ours: how triggers reach a function's agent. "direct": the agent subscribes to the trigger
  // subjects on the control NATS itself, when that needs no credentials (there is nothing to
  // hand over); otherwise, and with "relay", the node relays each trigger over the internal NATS.
  std::string function_triggers = "direct";
  // ours: a file holding a seed (SA...) of the account the node logs in to, or of one of its
  // signing keys (operator mode). With it, the node gives each function's agent a user of its
  // own that may only subscribe to its trigger subjects and answer them, so even a node with
  // credentials (or a sandboxed function) takes the direct route.
  std::filesystem::path trigger_signing_key_file;
};

// Mints the per-workload users (operator mode): a function's trigger user, and its
// host-services users (host_services::Server).
class TriggerCredentials {
 public:
  // From the config's signing key file and the account of the node's own creds file; nullopt
  // when the config names no key. An error names what is wrong (a key that is not an account
  // key, a node not logging in with a creds file).
  static Result<std::optional<TriggerCredentials>> load(const RouteConfig& config,
                                                        const nats::ConnectOptions& control);

  struct User {
    std::string jwt;
    std::string seed;
  };
  // A user for the function `workload_id` that may subscribe to `subjects` only, and answer each
  // request it receives once, within `answer_window`.
  User mint(const std::string& workload_id, const std::vector<std::string>& subjects,
            std::chrono::milliseconds answer_window) const;
  // A user named `name` that may do what `permissions` ("pub", "sub", "resp" claims) says; the
  // host-services users of each workload are signed this way too.
  User sign(const std::string& name, const nlohmann::json& permissions) const;

 private:
  TriggerCredentials(const crypto::KeyPair& key, std::string account)
      : signing_key_(key), account_(std::move(account)) {}
  crypto::KeyPair signing_key_;
  std::string account_;  // the account public key the users belong to
};

// How long a function's caller may wait for its answer: the function's own time limit, and a
// margin for the answer to get out.
std::chrono::milliseconds answer_window(const api::FunctionLimitsConfig& limits);

struct DirectTriggers {
  std::vector<std::string> urls;    // with the function's own login, as NATS_URL gives them
  TriggerCredentials::User user;    // empty: none, or what the URLs carry
  std::vector<int> loopback_ports;  // sandboxed: the ports to reach inside the sandbox
  std::string login;                // how the agent logs in, for the node's log
};

// The direct route for a function, in the order above (`environment` is its decrypted deploy
// environment), or nullopt: relay. `function_triggers: "relay"` relays every function.
std::optional<DirectTriggers> direct_triggers(
    const RouteConfig& config, const nats::ConnectOptions& control, bool sandboxed,
    const TriggerCredentials* credentials, const std::string& workload_id,
    const std::vector<std::string>& subjects, std::chrono::milliseconds answer_window,
    const std::map<std::string, std::string>& environment = {});

}  // namespace nex::triggers
