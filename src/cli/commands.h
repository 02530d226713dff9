// Each command group registers its subcommands on the root CLI11 app. Handlers return the
// process exit code: 0 success, 1 user or runtime error, 2 usage (CLI11 reports those itself).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace nex::cli {

// Set by a command's callback; run after parsing so errors propagate as exit codes.
using CommandAction = std::function<int()>;

void register_version_command(CLI::App& app, CommandAction& action);
void register_up_command(CLI::App& app, CommandAction& action);

}  // namespace nex::cli
