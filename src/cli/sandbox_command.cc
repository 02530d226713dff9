// `nex node preflight` and `nex rootfs`: getting a host ready for sandboxed workloads.
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "core/subprocess.h"
#include "microvm/microvm_driver.h"
#include "node/preflight.h"
#include "sandbox/rootfs.h"

namespace nex::cli {
namespace fs = std::filesystem;

fs::path agent_next_to_nex() { return program_beside_self("nex-agent"); }

namespace {

// The configuration of an empty file: the defaults, with the paths derived from them
// (rootfs_filepath = default_resource_dir/rootfs.ext4, ...).
node::NodeConfig default_config() { return *node::parse_node_config("{}"); }

}  // namespace

Result<node::NodeConfig> node_config_for(const std::string& file, std::string& why_unsandboxed) {
  if (!file.empty()) {
    why_unsandboxed = "\"no_sandbox\": true in " + file;
    return node::load_node_config(file);
  }
  node::NodeConfig config = default_config();
  // A VM per workload when the host has hardware virtualization and /tmp/wd holds a guest (as
  // `preflight --init` with "sandbox": "microvm" leaves it); under emulation a VM boots in
  // seconds, so the namespace sandbox stays the default there.
  node::NodeConfig vm = config;
  vm.sandbox = "microvm";
  if (geteuid() == 0 && microvm::choose_accelerator().accelerator == "kvm" &&
      node::preflight_passes(vm, agent_next_to_nex()))
    return vm;
  if (geteuid() != 0) {
    why_unsandboxed = "not running as root";
  } else if (!node::preflight_passes(config, agent_next_to_nex())) {
    why_unsandboxed =
        "`nex node preflight` does not pass; `sudo nex node preflight --init` fixes that";
  }
  config.no_sandbox = !why_unsandboxed.empty();
  return config;
}

namespace {

struct PreflightOptions {
  std::string config = "./config.json";
  bool init = false;
};

int print_preflight(const node::NodeConfig& config) {
  bool all_ok = true;
  for (const auto& section : node::preflight(config, agent_next_to_nex())) {
    std::printf("Validating - %s\n", section.title.c_str());
    for (const auto& dir : section.searched) std::printf("        🔎 Searching - %s\n", dir.c_str());
    for (const auto& item : section.items) {
      if (item.ok && item.notice) {
        std::printf("          ⚠️  Notice - %s [%s]: %s\n", item.what.c_str(),
                    item.description.c_str(), item.fix.c_str());
      } else if (item.ok) {
        std::printf("          ✅ Dependency Satisfied - %s [%s]\n", item.what.c_str(),
                    item.description.c_str());
      } else {
        all_ok = false;
        std::printf("          ❌ Missing Dependency - %s [%s]: %s\n", item.what.c_str(),
                    item.description.c_str(), item.fix.c_str());
      }
    }
    std::printf("\n");
  }
  std::printf(all_ok ? "All dependencies satisfied: `nex node up` can run sandboxed workloads.\n"
                     : "Some dependencies are missing (❌ above).\n");
  return all_ok ? 0 : 1;
}

int run_preflight(const PreflightOptions& opts, bool config_given) {
  node::NodeConfig config = default_config();
  if (fs::exists(opts.config)) {
    auto loaded = node::load_node_config(opts.config);
    if (!loaded) return report(loaded.error());
    config = std::move(*loaded);
    std::printf("Checking the node configuration %s\n", opts.config.c_str());
  } else if (config_given) {
    return report({ErrorCode::kNotFound, "--config: " + opts.config + " not found"});
  } else {
    std::printf("No %s here: checking the default configuration\n", opts.config.c_str());
  }
  if (config.no_sandbox)
    std::printf("\"no_sandbox\": true: workloads run as plain processes (the process driver)\n");
  std::printf("\n");
  if (opts.init) {
    auto done = node::preflight_init(config, agent_next_to_nex());
    if (!done) return report(done.error());
    for (const auto& line : *done) std::printf("%s\n", line.c_str());
    if (!done->empty()) std::printf("\n");
  }
  return print_preflight(config);
}

struct RootfsOptions {
  std::string output;
  int64_t size_mib = 0;
  std::string agent;
};

int run_rootfs(const RootfsOptions& opts) {
  auto r = sandbox::build_rootfs(
      {.agent_binary = opts.agent.empty() ? agent_next_to_nex() : fs::path(opts.agent),
       .output = opts.output,
       .size_mib = opts.size_mib});
  if (!r) return report(r.error());
  std::printf("Built %s: ext4, %lld MiB (%lld KiB of content: nex-agent, %zu libraries, busybox)\n",
              opts.output.c_str(), static_cast<long long>(r->image_mib),
              static_cast<long long>(r->content_bytes >> 10), r->libraries);
  return 0;
}

}  // namespace

void register_preflight_command(CLI::App& node, CommandAction& action) {
  auto opts = std::make_shared<PreflightOptions>();
  auto* cmd = node.add_subcommand("preflight",
                                  "Check that this host has what the node's sandbox driver needs");
  auto* config = cmd->add_option("--config", opts->config, "the node configuration file")
                     ->capture_default_str();
  cmd->add_flag("--init", opts->init,
                "Write the default CNI configuration and build the root filesystem when missing");
  on_parsed(cmd, action, [opts, config] { return run_preflight(*opts, config->count() > 0); });
}

void register_rootfs_command(CLI::App& app, CommandAction& action) {
  auto opts = std::make_shared<RootfsOptions>();
  auto* cmd = app.add_subcommand(
      "rootfs", "Build an ext4 root filesystem for sandboxes: the agent, its libraries, busybox");
  cmd->add_option("-o,--output", opts->output, "the image file to write")->required();
  cmd->add_option("--size", opts->size_mib, "image size in MB (default: what the content needs)");
  cmd->add_option("--agent", opts->agent, "the agent to put in (default: the one next to nex)");
  on_parsed(cmd, action, [opts] { return run_rootfs(*opts); });
}

}  // namespace nex::cli
