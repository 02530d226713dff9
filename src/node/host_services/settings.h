// What each host service may do, from the node config's "host_services": {"services": {...}}.
// The shape follows Nex's node config (a service name mapped to {"enabled", "config"}); the
// configuration keys inside "config" are ours. Every service is enabled by default.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "api/json_fields.h"
#include "api/subject_policy.h"
#include "core/error.h"
#include "node/host_services/http_policy.h"
#include "node/storage_caps.h"

namespace nex::node::host_services {

// A workload's bucket: its caps are set when the node creates it, and again when the node finds
// it with other caps.
struct BucketSettings {
  bool enabled = true;
  StorageCaps caps{.max_bytes = 512 * 1024, .max_message_bytes = 256 * 1024, .retention_days = 90};
  nats::ReplicaPolicy replicas;  // not read from the config: the node's choice
};

struct MessagingSettings {
  bool enabled = true;
  int64_t request_timeout_ms = 750;
  int64_t request_many_timeout_ms = 3000;  // requestMany gathers answers at most this long
  // A subject must pass the node's subject policy (reserved subjects only through its grants),
  // then match one allowed pattern and no denied one.
  api::SubjectPolicy policy;
  std::vector<std::string> allow_subjects = {">"};
  std::vector<std::string> deny_subjects;
};

struct HttpSettings {
  bool enabled = true;
  int64_t timeout_ms = 2500;
  int64_t max_redirects = 3;
  int64_t max_response_bytes = 1024 * 1024;
  // Host names (or "*.example.com") requests may go to; empty allows any.
  std::vector<std::string> allow_hosts;
  // Addresses besides public ones that requests may reach: networks, and names whose addresses
  // are open for requests to them. Whatever it says, the node's own ports stay out of reach
  // (http_policy.h).
  NetworkAllowList allow_networks;
};

struct Settings {
  BucketSettings kv;
  BucketSettings object_store;
  MessagingSettings messaging;
  HttpSettings http;
};

// Reads the "services" object of the node config's "host_services"; errors name the field.
Status read_settings(const nlohmann::json& services, Settings& out);

}  // namespace nex::node::host_services
