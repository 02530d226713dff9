#include "node/node_config.h"

#include <fmt/format.h>
#include <cstring>

#include "api/json_fields.h"
#include "core/file_io.h"
#include "crypto/nkeys.h"

namespace nex::node {

using api::FieldReader;
using nlohmann::json;

namespace {

// A microVM's agent holds a few gateway connections itself (the internal NATS, its workload's
// NATS); past the upper bound the cap would bound nothing a node could afford.
constexpr int64_t kMinGatewayConnections = 4;
constexpr int64_t kMaxGatewayConnections = 65536;
// Workload logs: a line must carry a useful message, and stay well inside a NATS payload (1 MB
// by default) once it is wrapped in JSON with its escapes.
constexpr int64_t kMinLogLineBytes = 64;
constexpr int64_t kMaxLogLineBytes = 256 * 1024;
constexpr int64_t kMaxLogLinesPerSecond = 1'000'000;

// Runs `body` on the sub-object `field` when present; reports a non-object on the parent.
Status read_object(FieldReader& parent, const char* field,
                   const std::function<Status(FieldReader&)>& body) {
  const json* v = parent.raw(field);
  if (v == nullptr) return {};
  if (!v->is_object()) {
    parent.fail_field(field, "must be an object");
    return {};
  }
  FieldReader r(*v, std::string("node config: ") + field);
  return body(r);
}

Status read_workload_logs(FieldReader& r, WorkloadLogLimits& l) {
  r.no_unknown_fields({"lines_per_second", "burst", "max_line_bytes"});
  r.integer("lines_per_second", l.lines_per_second);
  r.integer("burst", l.burst);
  r.integer("max_line_bytes", l.max_line_bytes);
  if (l.lines_per_second < 1 || l.lines_per_second > kMaxLogLinesPerSecond)
    r.fail_field("lines_per_second",
                 fmt::format("must be between 1 and {} lines per second", kMaxLogLinesPerSecond));
  if (l.burst < 1 || l.burst > 100 * kMaxLogLinesPerSecond)
    r.fail_field("burst", fmt::format("must be between 1 and {} lines (the most a workload may "
                                      "write at once after a quiet spell)",
                                      100 * kMaxLogLinesPerSecond));
  if (l.max_line_bytes < kMinLogLineBytes || l.max_line_bytes > kMaxLogLineBytes)
    r.fail_field("max_line_bytes", fmt::format("must be between {} and {} bytes", kMinLogLineBytes,
                                               kMaxLogLineBytes));
  return r.status();
}

// The node config's sections, read in this order (which decides the failure reported first).
// Each adds its failures to `f` (the first one is reported) or returns one that ends the read.
Status read_identity(FieldReader& f, NodeConfig& c) {
  f.string("node_name", c.node_name);
  if (!c.node_name.empty()) {
    if (auto st = commands::validate_name(c.node_name, "node_name"); !st)
      return fail(ErrorCode::kInvalidArgument, "node config: " + st.error().message);
  }
  if (const json* cmds = f.raw("commands")) {
    if (!cmds->is_object()) {
      f.fail_field("commands", "must be an object");
    } else {
      NEX_RETURN_IF_ERROR(commands::parse_commands_config(*cmds, c.commands));
    }
  }
  return {};
}

Status read_machine(FieldReader& f, NodeConfig& c) {
  std::string s;
  if (f.string("default_resource_dir", s); !s.empty()) c.default_resource_dir = s;
  // Nex's documents spell the file fields three ways; all mean the same.
  for (const char* name : {"kernel_path", "kernel_file", "kernel_filepath"}) {
    s.clear();
    if (f.string(name, s); !s.empty()) c.kernel_filepath = s;
  }
  for (const char* name : {"rootfs_path", "rootfs_file", "rootfs_filepath"}) {
    s.clear();
    if (f.string(name, s); !s.empty()) c.rootfs_filepath = s;
  }
  f.integer("machine_pool_size", c.machine_pool_size);
  NEX_RETURN_IF_ERROR(read_object(f, "machine_template", [&](FieldReader& r) {
    r.no_unknown_fields({"vcpu_count", "memsize_mib"});
    r.integer("vcpu_count", c.machine_template.vcpu_count);
    r.integer("memsize_mib", c.machine_template.memsize_mib);
    if (c.machine_template.vcpu_count < 1) r.fail_field("vcpu_count", "must be at least 1");
    if (c.machine_template.memsize_mib < 16) r.fail_field("memsize_mib", "must be at least 16");
    return r.status();
  }));
  NEX_RETURN_IF_ERROR(read_object(f, "cni", [&](FieldReader& r) {
    r.no_unknown_fields({"network_name", "interface_name", "bin_path", "subnet", "conf_dir"});
    r.string("network_name", c.cni.network_name);
    r.string("interface_name", c.cni.interface_name);
    r.string_list("bin_path", c.cni.bin_path);
    std::string conf_dir;  // ours: where {network_name}.conflist is (default /etc/cni/conf.d)
    if (r.string("conf_dir", conf_dir); !conf_dir.empty()) c.cni.conf_dir = conf_dir;
    return r.status();
  }));
  return {};
}

void read_access(FieldReader& f, NodeConfig& c) {
  f.string_map("tags", c.tags);
  std::vector<std::string> issuers;
  f.string_list("requester_public_keys", issuers);
  f.string_list("valid_issuers", c.valid_issuers);
  c.valid_issuers.insert(c.valid_issuers.end(), issuers.begin(), issuers.end());
  f.string_list("operator_keys", c.operator_keys);
  f.boolean("allow_unbound_requests", c.allow_unbound_requests);
  if (f.raw("workload_types") != nullptr) {
    std::vector<std::string> types;
    f.string_list("workload_types", types);
    c.workload_types.clear();
    for (const auto& t : types) {
      auto parsed = api::parse_workload_type(t);
      if (!parsed) {
        f.fail_field("workload_types", "must list native, v8 or wasm (got '" + t + "')");
        break;
      }
      c.workload_types.push_back(*parsed);
    }
  }
}

void read_sandbox(FieldReader& f, NodeConfig& c) {
  f.boolean("no_sandbox", c.no_sandbox);
  f.string("sandbox", c.sandbox);
  if (c.sandbox != "namespace" && c.sandbox != "microvm")
    f.fail_field("sandbox", "must be \"namespace\" or \"microvm\"");
  if (const json* ports = f.raw("sandbox_nats_ports")) {
    for (const auto& p : ports->is_array() ? *ports : json::array({json()})) {
      if (!p.is_number_integer() || p.get<int64_t>() < 1 || p.get<int64_t>() > 65535) {
        f.fail_field("sandbox_nats_ports", "must be an array of port numbers (1 to 65535)");
        break;
      }
      c.sandbox_nats_ports.push_back(p.get<int>());
    }
  }
  f.string("sandbox_network", c.sandbox_network);
  if (c.sandbox_network != "filtered" && c.sandbox_network != "open")
    f.fail_field("sandbox_network",
                 "must be \"filtered\" (the default: sandboxes reach only the internal NATS of "
                 "this host) or \"open\" (every port of this host and of other sandboxes)");
  std::string initrd;
  if (f.string("initrd_filepath", initrd); !initrd.empty()) c.initrd_filepath = initrd;
  f.string("microvm_accelerator", c.microvm_accelerator);
  if (c.microvm_accelerator != "auto" && c.microvm_accelerator != "kvm" &&
      c.microvm_accelerator != "tcg")
    f.fail_field("microvm_accelerator", "must be \"auto\", \"kvm\" or \"tcg\"");
  f.integer("microvm_gateway_max_connections", c.microvm_gateway_max_connections);
  if (c.microvm_gateway_max_connections < kMinGatewayConnections ||
      c.microvm_gateway_max_connections > kMaxGatewayConnections)
    f.fail_field("microvm_gateway_max_connections",
                 fmt::format("must be between {} (the agent's own connections) and {}",
                             kMinGatewayConnections, kMaxGatewayConnections));
}

Status read_limits(FieldReader& f, NodeConfig& c) {
  NEX_RETURN_IF_ERROR(read_object(f, "node_limits", [&](FieldReader& r) {
    r.no_unknown_fields({"max_workloads", "max_total_bytes", "max_workload_bytes"});
    r.integer("max_workloads", c.node_limits.max_workloads);
    r.integer("max_total_bytes", c.node_limits.max_total_bytes);
    r.integer("max_workload_bytes", c.node_limits.max_workload_bytes);
    for (auto [name, v] : {std::pair{"max_workloads", c.node_limits.max_workloads},
                           {"max_total_bytes", c.node_limits.max_total_bytes},
                           {"max_workload_bytes", c.node_limits.max_workload_bytes}}) {
      if (v < 0) r.fail_field(name, "must not be negative (0 means unlimited)");
    }
    return r.status();
  }));
  NEX_RETURN_IF_ERROR(read_object(
      f, "workload_logs", [&](FieldReader& r) { return read_workload_logs(r, c.workload_logs); }));
  if (const json* replicas = f.raw("jetstream_replicas")) {
    if (replicas->is_number_integer() && replicas->get<int64_t>() >= 1 &&
        replicas->get<int64_t>() <= 5)
      c.jetstream_replicas = replicas->get<int64_t>();
    else if (*replicas != "auto")
      f.fail_field("jetstream_replicas", "must be \"auto\" or 1 to 5");
  }
  f.boolean("raise_jetstream_replicas", c.raise_jetstream_replicas);
  NEX_RETURN_IF_ERROR(read_object(f, "kept_workloads", [&](FieldReader& r) {
    r.no_unknown_fields({"max_bytes", "max_message_bytes", "retention_days"});
    // An entry holds a deploy request (up to 1 MiB) as a JSON string: up to twice its size.
    read_storage_caps(r, c.kept_workloads, 2 * static_cast<int64_t>(api::kMaxRequestBytes) + 4096);
    return r.status();
  }));
  return {};
}

Status read_triggers(FieldReader& f, NodeConfig& c) {
  f.string_list("deny_trigger_subjects", c.deny_trigger_subjects);
  std::vector<std::string> grants;
  f.string_list("subject_grants", grants);
  NEX_RETURN_IF_ERROR(f.status());
  auto policy = api::SubjectPolicy::with_grants(std::move(grants));
  if (!policy) return std::unexpected(policy.error());
  c.subject_policy = std::move(*policy);
  f.integer("agent_handshake_timeout_ms", c.agent_handshake_timeout_ms);
  f.integer("agent_ping_timeout_ms", c.agent_ping_timeout_ms);
  f.string("function_triggers", c.function_triggers);
  if (c.function_triggers != "direct" && c.function_triggers != "relay")
    f.fail_field("function_triggers", "must be \"direct\" or \"relay\"");
  std::string signing_key_file;
  f.string("trigger_signing_key_file", signing_key_file);
  c.trigger_signing_key_file = signing_key_file;
  return {};
}

Status read_host_services_and_autostart(FieldReader& f, NodeConfig& c) {
  NEX_RETURN_IF_ERROR(read_object(f, "host_services", [&](FieldReader& r) -> Status {
    r.string("nats_url", c.host_services.nats_url);
    r.string("nats_user_jwt", c.host_services.nats_user_jwt);
    r.string("nats_user_seed", c.host_services.nats_user_seed);
    r.no_unknown_fields({"nats_url", "nats_user_jwt", "nats_user_seed", "services"});
    NEX_RETURN_IF_ERROR(r.status());
    const json* services = r.raw("services");
    return services ? host_services::read_settings(*services, c.host_services_settings) : Status{};
  }));
  c.host_services_settings.messaging.policy = c.subject_policy;
  if (const json* a = f.raw("autostart")) {
    if (!a->is_array()) {
      f.fail_field("autostart", "must be an array of deploy requests");
    } else {
      for (size_t i = 0; i < a->size(); ++i) {
        auto req = api::parse_deploy_request(api::dump((*a)[i]));
        if (!req) {
          return fail(ErrorCode::kInvalidArgument,
                      "node config: autostart[" + std::to_string(i) + "]: " + req.error().message);
        }
        c.autostart.push_back(std::move(*req));
      }
    }
  }
  return {};
}

// What holds across fields, once each one was read; then the defaults that depend on others.
Status check_node_config(NodeConfig& c) {
  if (c.machine_pool_size < 1) {
    return fail(ErrorCode::kInvalidArgument,
                "node config: field 'machine_pool_size' must be at least 1");
  }
  if (c.agent_handshake_timeout_ms < 100 || c.agent_ping_timeout_ms < 10) {
    return fail(ErrorCode::kInvalidArgument,
                "node config: agent timeouts must be at least 100 ms (handshake) and 10 ms (ping)");
  }
  for (const auto& key : c.valid_issuers) {
    if (auto k = crypto::decode_public_key(crypto::KeyType::kAccount, key); !k) {
      return fail(ErrorCode::kInvalidArgument,
                  "node config: field 'valid_issuers' entry '" + key +
                      "' is not an account public key (A…): " + k.error().message);
    }
  }
  for (const auto& key : c.operator_keys) {
    auto k = crypto::decode_public_key(key);
    if (!k || (k->type != crypto::KeyType::kOperator && k->type != crypto::KeyType::kAccount)) {
      return fail(ErrorCode::kInvalidArgument,
                  "node config: field 'operator_keys' entry '" + key +
                      "' is not an operator (O…) or account (A…) public key");
    }
  }
  if (c.kernel_filepath.empty()) c.kernel_filepath = c.default_resource_dir / "vmlinux";
  if (c.rootfs_filepath.empty()) c.rootfs_filepath = c.default_resource_dir / "rootfs.ext4";
  if (c.initrd_filepath.empty()) c.initrd_filepath = c.kernel_filepath.parent_path() / "initrd.img";
  return {};
}

}  // namespace

Result<NodeConfig> parse_node_config(std::string_view text) {
  auto j = FieldReader::parse_object(text, "node config");
  if (!j) return fail(j.error());
  FieldReader f(*j, "node config");
  NodeConfig c;
  f.no_unknown_fields({"node_name",
                       "commands",
                       "default_resource_dir",
                       "kernel_filepath",
                       "kernel_path",
                       "kernel_file",
                       "rootfs_filepath",
                       "rootfs_path",
                       "rootfs_file",
                       "machine_pool_size",
                       "machine_template",
                       "cni",
                       "tags",
                       "valid_issuers",
                       "requester_public_keys",
                       "operator_keys",
                       "allow_unbound_requests",
                       "workload_types",
                       "no_sandbox",
                       "sandbox",
                       "sandbox_network",
                       "sandbox_nats_ports",
                       "initrd_filepath",
                       "microvm_accelerator",
                       "microvm_gateway_max_connections",
                       "node_limits",
                       "workload_logs",
                       "kept_workloads",
                       "jetstream_replicas",
                       "raise_jetstream_replicas",
                       "deny_trigger_subjects",
                       "subject_grants",
                       "agent_handshake_timeout_ms",
                       "agent_ping_timeout_ms",
                       "function_triggers",
                       "trigger_signing_key_file",
                       "host_services",
                       "autostart"});
  NEX_RETURN_IF_ERROR(read_identity(f, c));
  NEX_RETURN_IF_ERROR(read_machine(f, c));
  read_access(f, c);
  read_sandbox(f, c);
  NEX_RETURN_IF_ERROR(read_limits(f, c));
  NEX_RETURN_IF_ERROR(read_triggers(f, c));
  NEX_RETURN_IF_ERROR(read_host_services_and_autostart(f, c));
  NEX_RETURN_IF_ERROR(f.status());
  NEX_RETURN_IF_ERROR(check_node_config(c));
  return c;
}

Result<NodeConfig> load_node_config(const std::filesystem::path& path) {
  auto text = read_file(path);
  if (!text) return fail(ErrorCode::kNotFound, "node config: " + text.error().message);
  auto c = parse_node_config(*text);
  if (!c) return fail(c.error().code, path.string() + ": " + c.error().message);
  return c;
}

}  // namespace nex::node
