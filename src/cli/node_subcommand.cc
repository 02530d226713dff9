// `nex node up`: run this host as a nex node until SIGINT/SIGTERM.
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "api/control.h"
#include "api/signed_request.h"
#include "cli/connection_flags.h"
#include "cli/control_client.h"
#include "cli/local_keys.h"
#include "cli/node_runner.h"
#include "cli/subcommands.h"
#include "cli/table.h"
#include "core/clock.h"
#include "core/terminal_text.h"
#include "node/node.h"

namespace nex::cli {
namespace {

struct NodeUpOptions {
  std::string config;
  std::string state_dir;
  std::string name;
  std::string metrics;
  bool connect_retry = false;
};

const char* kNoNodes =
    "No nex node answered on %s within %.1fs.\n"
    "Start one with `nex node up --config FILE` (or `nex up` for a local NATS server and a "
    "node).\n";

std::string tags_text(const nlohmann::json& tags) {
  std::string out;
  if (!tags.is_object()) return out;
  for (auto it = tags.begin(); it != tags.end(); ++it) {
    if (!out.empty()) out += ", ";
    out += it.key() + "=" + (it->is_string() ? it->get<std::string>() : it->dump());
  }
  return terminal_safe(out);
}

// What a node answered in field `key`, for the terminal (escaped: a node speaks for its
// workloads, whose names and descriptions anyone deploying chose).
std::string str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  return terminal_safe(it->is_string() ? it->get<std::string>() : it->dump());
}

int node_ls(const ConnectionFlags& flags, bool full) {
  auto client = connect_control(flags);
  if (!client) return report(client.error());
  auto nodes = client->gather("$NEX.PING");
  if (!nodes) return report(nodes.error());
  if (flags.json) {
    std::printf("%s\n", nlohmann::json(*nodes).dump(2).c_str());
    return 0;
  }
  if (nodes->empty()) {
    std::printf(kNoNodes, flags.server.c_str(), flags.timeout_seconds);
    return 0;
  }
  std::vector<std::string> header = {"ID", "Name", "Version", "Uptime", "Workloads"};
  if (full) header.insert(header.end(), {"Xkey", "Tags"});
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : *nodes) {
    const auto& tags = n.value("tags", nlohmann::json::object());
    std::vector<std::string> row = {
        str(n, "node_id"), tags.is_object() ? str(tags, "node_name") : "", str(n, "version"),
        str(n, "uptime"), str(n, "running_machines")};
    if (full) row.insert(row.end(), {str(n, "target_xkey"), tags_text(tags)});
    rows.push_back(std::move(row));
  }
  std::printf("%s", render_table("NATS Execution Nodes", header, rows).c_str());
  return 0;
}

// Kept workloads not back yet after a restart (INFO's "restores").
void print_restores(const nlohmann::json& restores) {
  if (!restores.is_array() || restores.empty()) return;
  std::printf("Workloads not restored yet:\n");
  for (const auto& r : restores) {
    std::printf("Id: %s Name: %s State: %s Attempts: %s Next attempt in: %s s\nReason: %s\n",
                str(r, "id").c_str(), str(r, "name").c_str(), str(r, "state").c_str(),
                str(r, "attempts").c_str(), str(r, "next_attempt_s").c_str(),
                str(r, "reason").c_str());
  }
}

// The caps of the streams and buckets the node keeps (INFO's "storage").
void print_storage(const nlohmann::json& storage) {
  if (!storage.is_object() || storage.empty()) return;
  std::printf("Storage caps (bytes, bytes per message, retention, replicas):\n");
  for (const auto& [name, caps] : storage.items()) {
    if (!caps.is_object()) continue;
    const int64_t days = caps.value("retention_days", 0LL);
    std::printf("%s: %s, %s, %s, %lld\n", terminal_safe(name).c_str(),
                with_thousands(caps.value("max_bytes", 0LL)).c_str(),
                with_thousands(caps.value("max_message_bytes", 0LL)).c_str(),
                days > 0 ? (std::to_string(days) + " days").c_str() : "until removed",
                caps.value("replicas", 1LL));
  }
}

int node_info(const ConnectionFlags& flags, const std::string& node_id) {
  auto client = connect_control(flags);
  if (!client) return report(client.error());
  auto info = client->request("$NEX.INFO." + flags.ns + "." + node_id);
  if (!info) {
    if (info.error().code == ErrorCode::kNoResponders || info.error().code == ErrorCode::kTimeout) {
      std::fprintf(stderr,
                   "nex: node %s did not answer on %s; `nex node ls` lists the nodes that do\n",
                   node_id.c_str(), flags.server.c_str());
      return 1;
    }
    return report(info.error());
  }
  if (flags.json) {
    std::printf("%s\n", info->dump(2).c_str());
    return 0;
  }
  const auto& mem = info->value("memory", nlohmann::json::object());
  auto kb = [&](const char* k) {
    return with_thousands(mem.is_object() ? mem.value(k, 0LL) : 0LL);
  };
  std::printf("NEX Node Information\nNode: %s\nXkey: %s\nVersion: %s\nUptime: %s\nTags: %s\n",
              node_id.c_str(), str(*info, "public_xkey").c_str(), str(*info, "version").c_str(),
              str(*info, "uptime").c_str(),
              tags_text(info->value("tags", nlohmann::json::object())).c_str());
  std::printf("Memory in kB:\nFree: %s Available: %s\nTotal: %s\nWorkloads:\n", kb("free").c_str(),
              kb("available").c_str(), kb("total").c_str());
  const auto& machines = info->value("machines", nlohmann::json::array());
  if (!machines.is_array() || machines.empty())
    std::printf("(none in namespace %s)\n", flags.ns.c_str());
  for (const auto& m : machines) {
    const auto& w = m.value("workload", nlohmann::json::object());
    std::printf("Id: %s Healthy: %s\nRuntime: %s Name: %s\nDescription: %s\n", str(m, "id").c_str(),
                str(m, "healthy").c_str(), str(w, "runtime").c_str(), str(w, "name").c_str(),
                str(w, "description").c_str());
    if (m.contains("function_invocations")) {
      std::printf("Invocations: %s Total run time: %.3f ms\n",
                  with_thousands(m.value("function_invocations", 0LL)).c_str(),
                  static_cast<double>(m.value("function_runtime_ns", 0LL)) / 1e6);
    }
  }
  print_restores(info->value("restores", nlohmann::json::array()));
  print_storage(info->value("storage", nlohmann::json::object()));
  return 0;
}

int node_up(const ConnectionFlags& flags, const NodeUpOptions& opts) {
  std::string why_unsandboxed;
  auto config = node_config_for(opts.config, why_unsandboxed);
  if (!config) {
    std::fprintf(stderr, "nex node up: %s\n", config.error().message.c_str());
    return 1;
  }
  if (!opts.name.empty()) {
    if (auto st = commands::validate_name(opts.name, "--name"); !st) {
      std::fprintf(stderr, "nex node up: %s\n", st.error().message.c_str());
      return 1;
    }
    config->node_name = opts.name;
  }
  if (opts.config.empty() && config->no_sandbox)
    std::fprintf(stderr, "nex node up: no sandbox (%s): workloads run as plain processes\n",
                 why_unsandboxed.c_str());
  auto control = flags.options("nex-node");
  if (!control) {
    std::fprintf(stderr, "nex node up: %s\n", control.error().message.c_str());
    return 1;
  }
  return run_node(*control, *config, opts.state_dir.empty() ? default_state_dir() : opts.state_dir,
                  opts.metrics, {}, opts.connect_retry);
}

int node_lameduck(const ConnectionFlags& flags, const std::string& node_id) {
  auto issuer = default_issuer();
  if (!issuer) return report(issuer.error());
  auto client = connect_control(flags);
  if (!client) return report(client.error());
  // Signed, bound to this node, valid for minutes: a captured request cannot be used elsewhere.
  nlohmann::json body = {{"target_node", node_id}};
  api::sign_request(body,
                    {.action = api::action::kLameDuck,
                     .subject = node_id,
                     .expires_at = unix_seconds_now() + api::kDirectRequestLifetimeSeconds,
                     .claims = {{"type", "lameduck"}},
                     .jwt_field = api::kRequestJwtField},
                    *issuer);
  auto r = client->request("$NEX.LAMEDUCK." + node_id, body.dump());
  if (!r) {
    return report({r.error().code,
                   "node " + node_id + " did not enter lame duck mode: " + r.error().message});
  }
  if (flags.json) {
    std::printf("%s\n", r->dump(2).c_str());
  } else {
    std::printf(
        "Node %s is in lame duck mode: it accepts no new workloads; the running ones keep "
        "running.\n",
        node_id.c_str());
  }
  return 0;
}

// $NEX.WPING: which nodes run a workload (all of the namespace's, or one by id or name).
int node_probe(const ConnectionFlags& flags, const std::string& workload) {
  auto client = connect_control(flags);
  if (!client) return report(client.error());
  std::string subject = "$NEX.WPING." + flags.ns;
  if (!workload.empty()) subject += "." + workload;
  auto nodes = client->gather(subject);
  if (!nodes) return report(nodes.error());
  if (flags.json) {
    std::printf("%s\n", nlohmann::json(*nodes).dump(2).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : *nodes) {
    const auto& machines = n.value("running_machines", nlohmann::json::array());
    for (const auto& m : machines.is_array() ? machines : nlohmann::json::array()) {
      rows.push_back(
          {str(m, "id"), str(m, "name"), str(m, "type"), str(m, "namespace"), str(n, "node_id")});
    }
  }
  if (rows.empty()) {
    std::printf("No workload%s answered in namespace %s within %.1fs.\n",
                workload.empty() ? "" : (" '" + workload + "'").c_str(), flags.ns.c_str(),
                flags.timeout_seconds);
    return workload.empty() ? 0 : 1;
  }
  std::printf("%s", render_table("Workloads answering in namespace " + flags.ns,
                                 {"ID", "Name", "Type", "Namespace", "Node"}, rows)
                        .c_str());
  return 0;
}

}  // namespace

void register_node_subcommand(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags) {
  auto* node = app.add_subcommand("node", "Run and inspect nex nodes");
  node->require_subcommand(1);
  auto opts = std::make_shared<NodeUpOptions>();
  auto* up =
      node->add_subcommand("up", "Run this host as a nex node, accepting workloads over NATS");
  up->add_option("--config", opts->config, "node configuration file (JSON)");
  up->add_option("--name", opts->name,
                 "the name commands address this node by (default: config node_name, else the "
                 "host name)");
  up->add_option("--state-dir", opts->state_dir,
                 "where the node keeps its identity (default ~/.nex/node)");
  up->add_option("--metrics", opts->metrics,
                 "serve Prometheus metrics at http://HOST:PORT/metrics (e.g. 127.0.0.1:9100)");
  up->add_flag("--connect-retry", opts->connect_retry,
               "when NATS cannot be reached, keep trying with backoff (as under a supervisor such "
               "as systemd) instead of exiting 1");
  on_parsed(up, action, [opts, &flags] { return node_up(flags, *opts); });
  register_preflight_subcommand(*node, action);

  auto full = std::make_shared<bool>(false);
  auto* ls = node->add_subcommand("ls", "List the nodes that answer on this NATS");
  ls->add_flag("--full", *full, "also show each node's xkey and tags");
  on_parsed(ls, action, [full, &flags] { return node_ls(flags, *full); });

  auto info_id = std::make_shared<std::string>();
  auto* info =
      node->add_subcommand("info", "Show a node's details and its workloads in the namespace");
  info->add_option("id", *info_id, "the node's id (N...)")->required();
  on_parsed(info, action, [info_id, &flags] { return node_info(flags, *info_id); });

  auto ld_id = std::make_shared<std::string>();
  auto* lameduck = node->add_subcommand(
      "lameduck", "Tell a node to accept no new workloads (before maintenance or retirement)");
  lameduck->add_option("id", *ld_id, "the node's id (N...)")->required();
  on_parsed(lameduck, action, [ld_id, &flags] { return node_lameduck(flags, *ld_id); });

  auto probe_target = std::make_shared<std::string>();
  auto* probe = node->add_subcommand(
      "probe", "Find which nodes run a workload (all of the namespace's, or one by id or name)");
  probe->add_option("workload", *probe_target, "a workload id or name");
  on_parsed(probe, action, [probe_target, &flags] { return node_probe(flags, *probe_target); });
}

}  // namespace nex::cli
