// The node's configuration file (`nex node up --config FILE`): the fields Nex users know from
// the seeds, validated with messages that name the field. Unknown fields are errors, so a typo
// never silently falls back to a default.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "api/control.h"
#include "api/subject_policy.h"
#include "commands/command_service.h"
#include "core/error.h"
#include "node/host_services/settings.h"
#include "node/storage_caps.h"
#include "sandbox/cni.h"
#include "triggers/route.h"

namespace nex::node {

struct MachineTemplate {
  int64_t vcpu_count = 1;
  int64_t memsize_mib = 256;
};

struct NodeLimits {
  int64_t max_workloads = 0;       // 0 = unlimited
  int64_t max_total_bytes = 0;     // sum of artifact sizes; 0 = unlimited
  int64_t max_workload_bytes = 0;  // one artifact; 0 = unlimited
};

// ours: what one workload may put on $NEX.logs, enforced by the node (docs/logs.md). Lines over
// the rate are dropped, and the workload's log says how many once a second.
struct WorkloadLogLimits {
  int64_t lines_per_second = 1000;  // the bucket's refill rate
  int64_t burst = 5000;             // lines at once after a quiet spell (the bucket's size)
  int64_t max_line_bytes = 16384;   // a longer line is cut there, and marked as cut
};

// function_triggers and trigger_signing_key_file come from triggers::RouteConfig.
struct NodeConfig : triggers::RouteConfig {
  // The name commands address this node by ($NEX.cmd.{node_name}...) and `nex node ls` shows;
  // empty: the host name.
  std::string node_name;
  commands::CommandsConfig commands;  // durable commands (steward)
  std::filesystem::path default_resource_dir = "/tmp/wd";
  std::filesystem::path kernel_filepath;  // default: <default_resource_dir>/vmlinux
  std::filesystem::path rootfs_filepath;  // default: <default_resource_dir>/rootfs.ext4
  int64_t machine_pool_size = 1;
  MachineTemplate machine_template;
  sandbox::CniSettings cni;
  api::Tags tags;
  std::vector<std::string> valid_issuers;  // account public keys; empty = any issuer
  // ours: keys (operator O... or account A...) that may also put this node in lame duck.
  std::vector<std::string> operator_keys;
  // ours: accept requests that bind nothing (older Nex tooling), which can be replayed: deploy,
  // stop and lame-duck requests whose JWT binds nothing, durable commands without expiresAt;
  // off by default, and the node says so at start when on.
  bool allow_unbound_requests = false;
  std::vector<api::WorkloadType> workload_types = {
      api::WorkloadType::kNative, api::WorkloadType::kJavaScript, api::WorkloadType::kWasm};
  bool no_sandbox = false;
  // ours: which sandbox runs workloads unless no_sandbox: "namespace" (kernel namespaces,
  // cgroups, seccomp) or "microvm" (a QEMU microVM each, with kernel_filepath, initrd_filepath
  // and rootfs_filepath; docs/sandbox.md).
  std::string sandbox = "namespace";
  // ours: what a namespace sandbox's network reaches. "filtered": the node's internal NATS on
  // the sandbox's gateway and other hosts, but no other port of this host (any address, TCP or
  // UDP, IPv4 or IPv6) and nothing in other sandboxes. "open": every port of this host and of
  // other sandboxes too, as CNI's network alone allows (docs/sandbox.md). A microVM's network
  // is always the narrower one.
  std::string sandbox_network = "filtered";
  std::filesystem::path initrd_filepath;     // default: initrd.img beside kernel_filepath
  std::string microvm_accelerator = "auto";  // "auto", "kvm" or "tcg"
  // ours: the connections one microVM may hold open at once through its gateway (its agent's
  // and its workload's, to the internal NATS and to exposed host ports); more are closed.
  int64_t microvm_gateway_max_connections = 64;
  NodeLimits node_limits;
  WorkloadLogLimits workload_logs;
  // ours: how many copies a clustered JetStream keeps of each stream and bucket the node creates
  // (commands, node records, kept workloads, workloads' buckets): 1 to 5, or 0 for "auto": 3
  // when the connected JetStream can hold 3 (a cluster of 3 servers or more), else 1.
  int64_t jetstream_replicas = 0;
  // ours: raise those found with fewer replicas (made before the cluster grew) to that many;
  // without it, the node says which and the command that raises each.
  bool raise_jetstream_replicas = false;
  // ours: the caps of NEX_NODE_WORKLOADS, where nodes keep their workloads to bring back after a
  // restart; a node writes its entries again when half their retention has passed.
  StorageCaps kept_workloads{
      .max_bytes = 256 << 20, .max_message_bytes = 4 << 20, .retention_days = 30};
  // ours: ports on the host's loopback of NATS servers that a sandboxed workload's NATS_URL may
  // name (forwarded into its sandbox), besides those the node itself connects to. Any other
  // loopback port a deploy lists is refused: it could be any service of the host.
  std::vector<int> sandbox_nats_ports;
  // Trigger subjects no function may take, besides the reserved ones (api::SubjectPolicy).
  std::vector<std::string> deny_trigger_subjects;
  // ours: `subject_grants`, reserved subjects ($SRV.>, $KV.SOMEBUCKET.>, ...) that functions'
  // triggers and the messaging host service may use; some can never be granted.
  api::SubjectPolicy subject_policy;
  int64_t agent_handshake_timeout_ms = 5000;
  int64_t agent_ping_timeout_ms = 750;
  api::HostServicesConfig host_services;           // the host-services NATS connection
  host_services::Settings host_services_settings;  // host_services.services: what each may do
  std::vector<api::DeployRequest> autostart;
};

// Parses and validates a configuration document. Errors name the field ("node config: field
// 'machine_pool_size' must be an integer of at least 1").
Result<NodeConfig> parse_node_config(std::string_view json);
Result<NodeConfig> load_node_config(const std::filesystem::path& path);

}  // namespace nex::node
