// `nex node preflight`: everything the configured sandbox driver needs, checked one item at a
// time, each with the fix when it is missing; `--init` writes the default CNI configuration and
// builds the default root filesystem when they are missing.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "node/node_config.h"

namespace nex::node {

struct PreflightItem {
  bool ok = false;
  std::string what;         // a path, or what was looked at
  std::string description;  // "[ptp CNI plugin]"
  std::string fix;          // when !ok: what to do; with notice: how to undo the choice
  // Satisfied, but a choice of the configuration that widens what sandboxes reach.
  bool notice = false;
};

struct PreflightSection {
  std::string title;                  // "Required CNI Plugins"
  std::vector<std::string> searched;  // directories looked in
  std::vector<PreflightItem> items;
};

std::vector<PreflightSection> preflight(const NodeConfig& config,
                                        const std::filesystem::path& agent_binary);

// True when the namespace driver would find all it needs (the local default's test).
bool preflight_passes(const NodeConfig& config, const std::filesystem::path& agent_binary);

// Writes /etc/cni/conf.d/{network}.conflist and builds rootfs_filepath when missing; each line
// says what it did.
Result<std::vector<std::string>> preflight_init(const NodeConfig& config,
                                                const std::filesystem::path& agent_binary);

}  // namespace nex::node
