// The keys the CLI keeps in ~/.nex: the issuer account key that signs deploys and commands
// (issuer.nk), the publisher's xkey (publisher.xk) and, in node/, a node's identity.
#pragma once

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "core/error.h"
#include "crypto/nkeys.h"

namespace nex::cli {

// ~/.nex ($HOME/.nex; /tmp/.nex without a HOME).
std::filesystem::path nex_home();
// ~/.nex/node: where a node keeps its identity unless told otherwise.
std::string default_state_dir();
// The first nkey seed in `path` (a token starting with 'S'), as `nk -gen` and nex write them.
Result<std::string> read_seed(const std::filesystem::path& path, const char* what);
// The seed in `path`; or, when the file is missing, one made by `make` and written there (mode
// 0600), saying which on `say`.
Result<std::string> seed_file(const std::filesystem::path& path, const char* what,
                              const std::function<std::string()>& make, std::FILE* say = stdout);
// ~/.nex/issuer.nk, made when missing: the account key that signs deploys and commands.
Result<crypto::KeyPair> default_issuer();

}  // namespace nex::cli
