#include "node/node_config.h"

#include <gtest/gtest.h>

namespace nex::node {
namespace {

TEST(NodeConfig, SeedConfigsParseAsWritten) {
  // Nex 0.2's documented config fields (requester_public_keys, kernel_path) and its simple.json.
  auto a = parse_node_config(R"({"kernel_path": "/k/vmlinux", "rootfs_path": "/k/rootfs.ext4",
    "machine_pool_size": 1, "cni": {"network_name": "fcnet", "interface_name": "veth0"},
    "machine_template": {"vcpu_count": 1, "memsize_mib": 256}, "requester_public_keys": []})");
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_EQ(a->kernel_filepath, "/k/vmlinux");
  auto b = parse_node_config(R"({"default_resource_dir": "/tmp/wd", "machine_pool_size": 1,
    "cni": {"network_name": "fcnet", "interface_name": "veth0"},
    "machine_template": {"vcpu_count": 1, "memsize_mib": 256}, "tags": {"simple": "true"}})");
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->rootfs_filepath, "/tmp/wd/rootfs.ext4");
  EXPECT_EQ(b->tags.at("simple"), "true");
}

// Without initrd_filepath the initrd is the default beside the kernel, whichever spelling of the
// other file fields the config uses (one once leaked its value into the initrd).
TEST(NodeConfig, AnAbsentInitrdIsTheDefaultWhateverTheOtherFileFields) {
  for (const char* rootfs : {"rootfs_path", "rootfs_file", "rootfs_filepath"}) {
    auto c = parse_node_config(std::string(R"({"kernel_filepath": "/k/vmlinux", ")") + rootfs +
                               R"(": "/k/rootfs.ext4"})");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->rootfs_filepath, "/k/rootfs.ext4") << rootfs;
    EXPECT_EQ(c->initrd_filepath, "/k/initrd.img") << rootfs;
  }
}

TEST(NodeConfig, EveryFieldIsRead) {
  auto c = parse_node_config(R"({"no_sandbox": true, "workload_types": ["native"],
    "node_limits": {"max_workloads": 3, "max_total_bytes": 100, "max_workload_bytes": 10},
    "deny_trigger_subjects": ["secret.>"], "agent_handshake_timeout_ms": 2000,
    "agent_ping_timeout_ms": 500, "host_services": {"nats_url": "nats://127.0.0.1:4222"},
    "valid_issuers": ["AB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGIFW3"]})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->no_sandbox);
  EXPECT_EQ(c->workload_types, std::vector<api::WorkloadType>{api::WorkloadType::kNative});
  EXPECT_EQ(c->node_limits.max_workloads, 3);
  EXPECT_EQ(c->node_limits.max_workload_bytes, 10);
  EXPECT_EQ(c->deny_trigger_subjects, std::vector<std::string>{"secret.>"});
  EXPECT_EQ(c->agent_handshake_timeout_ms, 2000);
  EXPECT_EQ(c->host_services.nats_url, "nats://127.0.0.1:4222");
  EXPECT_EQ(c->valid_issuers.size(), 1u);
}

TEST(NodeConfig, DurableCommandsAreConfigured) {
  auto c = parse_node_config(R"({"node_name": "ship1", "commands": {"retention_days": 7,
    "default_timeout_s": 5, "max_timeout_s": 600, "output_limit_bytes": 1024,
    "jetstream_domain": "hub", "text_log_file": "/var/log/t.txt",
    "cli_command": {"enabled": true, "allow": ["uptime"], "user": "nobody"}}})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->node_name, "ship1");
  EXPECT_EQ(c->commands.retention_days, 7);
  EXPECT_EQ(c->commands.max_timeout_s, 600);
  EXPECT_EQ(c->commands.jetstream_domain, "hub");
  EXPECT_TRUE(c->commands.cli_command.enabled);
  EXPECT_EQ(c->commands.cli_command.allow, std::vector<std::string>{"uptime"});
  // Off unless enabled.
  EXPECT_FALSE(parse_node_config("{}")->commands.cli_command.enabled);

  auto error = [](const char* text) {
    auto r = parse_node_config(text);
    return r ? std::string("parsed") : r.error().message;
  };
  EXPECT_EQ(error(R"({"node_name": "ship 1"})"),
            "node config: field 'node_name' must be 1 to 64 of [A-Za-z0-9_-] (got 'ship 1')");
  EXPECT_EQ(error(R"({"commands": {"cli_command": {"enabled": true}}})"),
            "node config: commands.cli_command: field 'allow' must list the commands (argv[0]) "
            "that may run when enabled");
  EXPECT_NE(error(R"({"commands": {"retention": 7}})").find("retention"), std::string::npos);
  EXPECT_NE(error(R"({"commands": {"cli_command": {"enabled": true, "allow": ["ls"],
    "user": "no-such-user-here"}}})")
                .find("field 'user' names no user on this host"),
            std::string::npos);
  EXPECT_NE(
      error(R"({"commands": {"max_timeout_s": 1, "default_timeout_s": 10}})").find("max_timeout_s"),
      std::string::npos);
}

TEST(NodeConfig, TheCommandStreamsCapsAndUnboundRequestsAreConfigured) {
  auto d = parse_node_config("{}");
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->allow_unbound_requests);
  EXPECT_EQ(d->commands.max_bytes, 256 << 20);
  EXPECT_EQ(d->commands.max_message_bytes, 1 << 20);
  auto c = parse_node_config(R"({"allow_unbound_requests": true,
    "commands": {"max_bytes": 1048576, "max_message_bytes": 65536}})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->allow_unbound_requests);
  EXPECT_EQ(c->commands.max_bytes, 1048576);
  EXPECT_EQ(c->commands.max_message_bytes, 65536);
  auto error = [](const char* text) {
    auto r = parse_node_config(text);
    return r ? std::string("parsed") : r.error().message;
  };
  EXPECT_EQ(error(R"({"commands": {"max_message_bytes": 1024}})"),
            "node config: commands: field 'max_message_bytes' must be 65536 to 67108864 bytes");
  EXPECT_EQ(error(R"({"commands": {"max_bytes": 65536, "max_message_bytes": 131072}})"),
            "node config: commands: field 'max_bytes' must be at least max_message_bytes");
  EXPECT_NE(error(R"({"allow_unbound_requests": "yes"})").find("allow_unbound_requests"),
            std::string::npos);
}

TEST(NodeConfig, HostServicesAreConfiguredPerService) {
  auto c = parse_node_config(R"({"host_services": {"nats_url": "nats://127.0.0.1:4222",
    "services": {"kv": {"enabled": false}, "objectstore": {"config": {"max_bytes": 8388608}},
      "messaging": {"config": {"request_timeout_ms": 100, "deny_subjects": ["admin.>"]}},
      "http": {"enabled": true, "config": {"allow_hosts": ["*.example.org"], "max_redirects": 0}}}}})");
  ASSERT_TRUE(c) << c.error().message;
  const auto& s = c->host_services_settings;
  EXPECT_FALSE(s.kv.enabled);
  EXPECT_TRUE(s.object_store.enabled) << "services are on unless turned off";
  EXPECT_EQ(s.object_store.caps.max_bytes, 8388608);
  EXPECT_EQ(s.messaging.request_timeout_ms, 100);
  EXPECT_EQ(s.messaging.deny_subjects, std::vector<std::string>{"admin.>"});
  EXPECT_EQ(s.messaging.allow_subjects, std::vector<std::string>{">"});
  EXPECT_EQ(s.http.allow_hosts, std::vector<std::string>{"*.example.org"});
  EXPECT_EQ(s.http.max_redirects, 0);
  EXPECT_TRUE(s.http.allow_networks.networks.empty()) << "only public addresses by default";

  for (auto [text, needle] : std::vector<std::pair<const char*, const char*>>{
           {R"({"host_services": {"services": {"ftp": {}}}})", "no service 'ftp'"},
           {R"({"host_services": {"services": {"kv": {"config": {"max_bytes": 0}}}}})",
            "host_services.services.kv.config: field 'max_bytes' must be at least 1024 bytes"},
           {R"({"host_services": {"services": {"objectstore": {"config":
              {"max_bytes": 4096, "max_message_bytes": 65536}}}}})",
            "objectstore.config: field 'max_bytes' must be at least max_message_bytes"},
           {R"({"host_services": {"services": {"kv": {"config": {"retention_days": -1}}}}})",
            "kv.config: field 'retention_days' must not be negative"},
           {R"({"host_services": {"services": {"http": {"config": {"allow_hosts": "x"}}}}})",
            "'allow_hosts'"},
           {R"({"host_services": {"natsurl": "nats://x"}})", "'natsurl'"}}) {
    auto bad = parse_node_config(text);
    ASSERT_FALSE(bad) << text;
    EXPECT_NE(bad.error().message.find(needle), std::string::npos) << bad.error().message;
  }
}

TEST(NodeConfig, SubjectGrantsOpenReservedSubjectsForTriggersAndMessaging) {
  auto c = parse_node_config(R"({"subject_grants": ["$SRV.>"]})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->subject_policy.grants(), std::vector<std::string>{"$SRV.>"});
  EXPECT_EQ(c->host_services_settings.messaging.policy.grants(), c->subject_policy.grants());
  EXPECT_EQ(c->subject_policy.refusal("$SRV.PING"), "");
  auto bad = parse_node_config(R"({"subject_grants": ["$KV.NEX_NODES.>"]})");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("field 'subject_grants': '$KV.NEX_NODES.>' cannot be granted"),
            std::string::npos)
      << bad.error().message;
}

TEST(NodeConfig, HttpAllowNetworksTakesNetworksAndNamesAndSaysWhatIsWrong) {
  auto c = parse_node_config(R"({"host_services": {"services": {"http": {"config":
    {"allow_networks": ["10.1.2.0/24", "127.0.0.1", "fd00::/8", "Metrics.Internal", "*.lan"]}}}}})");
  ASSERT_TRUE(c) << c.error().message;
  const auto& list = c->host_services_settings.http.allow_networks;
  ASSERT_EQ(list.networks.size(), 3u);
  EXPECT_EQ(list.networks[0].to_string(), "10.1.2.0/24");
  EXPECT_EQ(list.networks[1].to_string(), "127.0.0.1/32");
  EXPECT_EQ(list.networks[2].to_string(), "fd00::/8");
  EXPECT_EQ(list.hosts, (std::vector<std::string>{"metrics.internal", "*.lan"}));

  const std::string field = "host_services.services.http.config: field 'allow_networks' ";
  for (auto [entry, why] : std::vector<std::pair<const char*, std::string>>{
           {R"("10.1.2.3/24")",
            "entry '10.1.2.3/24': it has bits set past the prefix length; "
            "the network is 10.1.2.0/24"},
           {R"("10.0.0.0/33")", "entry '10.0.0.0/33': the prefix length must be 0-32"},
           {R"("fd00::/129")", "entry 'fd00::/129': the prefix length must be 0-128"},
           {R"("10.300.0.0/16")", "entry '10.300.0.0/16': '10.300.0.0' is not an IPv4 or IPv6"},
           {R"("10.1.2")", "entry '10.1.2': '10.1.2' is not an IPv4 address"},
           {R"("metrics internal")", "entry 'metrics internal': expected a network"},
           {R"(5)", "must be an array of strings"}}) {
    const std::string text = R"({"host_services": {"services": {"http": {"config":
      {"allow_networks": [)" +
                             std::string(entry) + "]}}}}}";
    auto bad = parse_node_config(text);
    ASSERT_FALSE(bad) << text;
    EXPECT_NE(bad.error().message.find(field + why), std::string::npos) << bad.error().message;
  }
}

TEST(NodeConfig, TheMicrovmSandboxFindsItsInitramfsBesideTheKernel) {
  auto c = parse_node_config(R"({"sandbox": "microvm", "kernel_filepath": "/srv/vm/vmlinux"})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sandbox, "microvm");
  EXPECT_EQ(c->initrd_filepath, "/srv/vm/initrd.img");
  EXPECT_EQ(c->microvm_accelerator, "auto");
  EXPECT_EQ(c->microvm_gateway_max_connections, 64);
  auto e = parse_node_config(R"({"microvm_gateway_max_connections": 16})");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->microvm_gateway_max_connections, 16);
  auto d = parse_node_config("{}");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sandbox, "namespace");
  EXPECT_EQ(d->initrd_filepath, "/tmp/wd/initrd.img");
}

// Sandboxes reach only the internal NATS of their host unless a config names the wider choice.
TEST(NodeConfig, TheSandboxNetworkIsFilteredUnlessOpenedByName) {
  auto d = parse_node_config("{}");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->sandbox_network, "filtered");
  auto c = parse_node_config(R"({"sandbox_network": "open"})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sandbox_network, "open");
}

TEST(NodeConfig, WorkloadLogLimitsHaveDefaultsAndCanBeSet) {
  auto defaults = parse_node_config("{}");
  ASSERT_TRUE(defaults) << defaults.error().message;
  EXPECT_EQ(defaults->workload_logs.lines_per_second, 1000);
  EXPECT_EQ(defaults->workload_logs.burst, 5000);
  EXPECT_EQ(defaults->workload_logs.max_line_bytes, 16384);
  auto c = parse_node_config(
      R"({"workload_logs": {"lines_per_second": 50, "burst": 200, "max_line_bytes": 1024}})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->workload_logs.lines_per_second, 50);
  EXPECT_EQ(c->workload_logs.burst, 200);
  EXPECT_EQ(c->workload_logs.max_line_bytes, 1024);
}

TEST(NodeConfig, EveryBucketTheNodeCreatesHasCapsWithDefaults) {
  auto defaults = parse_node_config("{}");
  ASSERT_TRUE(defaults) << defaults.error().message;
  for (const StorageCaps* caps :
       {&defaults->kept_workloads, &defaults->host_services_settings.kv.caps,
        &defaults->host_services_settings.object_store.caps}) {
    EXPECT_GT(caps->max_bytes, 0);
    EXPECT_GT(caps->max_message_bytes, 0);
    EXPECT_GT(caps->retention_days, 0);
  }
  auto c = parse_node_config(R"({"kept_workloads": {"max_bytes": 33554432,
    "max_message_bytes": 4194304, "retention_days": 0},
    "host_services": {"services": {"kv": {"config": {"max_bytes": 2048, "max_message_bytes": 1024,
      "retention_days": 2}}}}})");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->kept_workloads.max_bytes, 33554432);
  EXPECT_EQ(c->kept_workloads.retention_days, 0) << "0 keeps entries until removed";
  EXPECT_EQ(c->host_services_settings.kv.caps.max_message_bytes, 1024);
  EXPECT_EQ(c->host_services_settings.kv.caps.retention_days, 2);
}

TEST(NodeConfig, ErrorsNameTheField) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"machine_pool_sise": 1})", "unknown field 'machine_pool_sise'"},
      {R"({"machine_pool_size": "1"})", "field 'machine_pool_size' must be an integer"},
      {R"({"machine_pool_size": 0})", "field 'machine_pool_size' must be at least 1"},
      {R"({"machine_template": {"vcpu_count": 0}})", "field 'vcpu_count' must be at least 1"},
      {R"({"machine_template": {"cpus": 2}})",
       "node config: machine_template: unknown field 'cpus'"},
      {R"({"cni": []})", "field 'cni' must be an object"},
      {R"({"tags": {"a": 1}})", "field 'tags' must be an object of strings"},
      {R"({"no_sandbox": "true"})", "field 'no_sandbox' must be true or false"},
      {R"({"workload_types": ["native", "python"]})",
       "field 'workload_types' must list native, v8 or wasm"},
      {R"({"node_limits": {"max_workloads": -1}})", "field 'max_workloads' must not be negative"},
      {R"({"valid_issuers": ["UB43KVROR7TFJ6KAPCYRF2FJROTZAH4FHLTJLPWX4DRZCC5NASLGJBFE"]})",
       "is not an account public key"},
      {R"({"autostart": [{"location": "nats://B/k"}]})",
       "autostart[0]: deploy request: field 'workload_jwt'"},
      {R"({"sandbox_nats_ports": [4222, 0]})",
       "field 'sandbox_nats_ports' must be an array of port numbers"},
      {R"({"sandbox_nats_ports": "4222"})",
       "field 'sandbox_nats_ports' must be an array of port numbers"},
      {R"({"sandbox": "vm"})", "field 'sandbox' must be \"namespace\" or \"microvm\""},
      {R"({"sandbox_network": "host"})",
       "field 'sandbox_network' must be \"filtered\" (the default: sandboxes reach only the "
       "internal NATS of this host) or \"open\""},
      {R"({"microvm_accelerator": "hvf"})",
       "field 'microvm_accelerator' must be \"auto\", \"kvm\" or \"tcg\""},
      {R"({"microvm_gateway_max_connections": 0})",
       "field 'microvm_gateway_max_connections' must be between 4"},
      {R"({"microvm_gateway_max_connections": 100000})",
       "field 'microvm_gateway_max_connections' must be between 4"},
      {R"({"microvm_gateway_max_connections": "64"})",
       "field 'microvm_gateway_max_connections' must be an integer"},
      {R"({"workload_logs": {"lines_per_second": 0}})",
       "node config: workload_logs: field 'lines_per_second' must be between 1 and 1000000"},
      {R"({"workload_logs": {"burst": -5}})", "workload_logs: field 'burst' must be between 1"},
      {R"({"workload_logs": {"max_line_bytes": 10}})",
       "workload_logs: field 'max_line_bytes' must be between 64 and 262144 bytes"},
      {R"({"workload_logs": {"lines": 5}})", "node config: workload_logs: unknown field 'lines'"},
      {R"({"workload_logs": 100})", "field 'workload_logs' must be an object"},
      {R"({"kept_workloads": {"max_message_bytes": 1024}})",
       "kept_workloads: field 'max_message_bytes' must be 2101248 to 67108864 bytes"},
      {R"({"kept_workloads": {"max_bytes": 1048576}})",
       "kept_workloads: field 'max_bytes' must be at least 2101248 bytes"},
      {R"({"kept_workloads": {"ttl": 1}})", "node config: kept_workloads: unknown field 'ttl'"},
      {"not json", "node config is not valid JSON"},
  };
  for (auto [text, expect] : cases) {
    auto c = parse_node_config(text);
    ASSERT_FALSE(c) << text;
    EXPECT_NE(c.error().message.find(expect), std::string::npos) << text << "\n"
                                                                 << c.error().message;
  }
}

}  // namespace
}  // namespace nex::node
