#include <nats/nats.h>

#include <cstdio>

#include "cli/commands.h"

namespace nex::cli {

void register_version_command(CLI::App& app, CommandAction& action) {
  auto* cmd = app.add_subcommand("version", "Print the version of nex");
  on_parsed(cmd, action, [] {
    std::printf("nex %s (libnats %s)\n", NEX_VERSION, nats_GetVersion());
    return 0;
  });
}

}  // namespace nex::cli
