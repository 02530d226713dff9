#include <nats/nats.h>

#include <cstdio>

#include "cli/subcommands.h"

namespace nex::cli {

void register_version_subcommand(CLI::App& app, SubcommandAction& action) {
  auto* cmd = app.add_subcommand("version", "Print the version of nex");
  on_parsed(cmd, action, [] {
    std::printf("nex %s (libnats %s)\n", NEX_VERSION, nats_GetVersion());
    return 0;
  });
}

}  // namespace nex::cli
