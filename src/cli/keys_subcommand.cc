// `nex keys`: the public halves of the CLI's keys and the files they live in, so a node's config
// can name them (`valid_issuers`, which `cliCommand` requires). Seeds are never printed.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/local_keys.h"
#include "cli/subcommands.h"
#include "crypto/xkeys.h"

namespace nex::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct KeysOptions {
  std::string issuer_file;
  std::string xkey_file;
};

// The seed in `file`. The default files are made when missing, as devrun makes them, so a new
// user can set up a node before deploying anything; a file named by a flag must exist.
Result<std::string> seed_in(const fs::path& file, const fs::path& default_file, const char* what,
                            const std::function<std::string()>& make, std::FILE* say) {
  if (file == default_file && !fs::exists(file)) return seed_file(file, what, make, say);
  return read_seed(file, what);
}

int show_keys(const ConnectionFlags& flags, const KeysOptions& o) {
  // Messages about files made go to stderr with --json, so stdout stays one JSON document.
  std::FILE* say = flags.json ? stderr : stdout;
  const fs::path issuer_file = o.issuer_file, xkey_file = o.xkey_file;
  auto issuer_seed = seed_in(
      issuer_file, nex_home() / "issuer.nk", "issuer account key",
      [] { return crypto::KeyPair::create(crypto::KeyType::kAccount)->seed(); }, say);
  if (!issuer_seed) return report(issuer_seed.error());
  auto issuer = crypto::KeyPair::from_seed(*issuer_seed);
  if (!issuer || issuer->type() != crypto::KeyType::kAccount)
    return report({ErrorCode::kInvalidArgument,
                   issuer_file.string() +
                       " holds a key that is not an account seed (SA...), which an issuer is"});
  auto xkey_seed = seed_in(
      xkey_file, nex_home() / "publisher.xk", "publisher xkey",
      [] { return crypto::XKey::create().seed(); }, say);
  if (!xkey_seed) return report(xkey_seed.error());
  auto xkey = crypto::XKey::from_seed(*xkey_seed);
  if (!xkey)
    return report(
        {ErrorCode::kInvalidArgument,
         xkey_file.string() + " holds a key that is not a curve seed (SX...), which an xkey is"});

  const std::string issuer_public = issuer->public_key(), xkey_public = xkey->public_key();
  if (flags.json) {
    std::printf(
        "%s\n",
        json{{"issuer", {{"public_key", issuer_public}, {"file", issuer_file.string()}}},
             {"publisher_xkey", {{"public_key", xkey_public}, {"file", xkey_file.string()}}}}
            .dump(2)
            .c_str());
    return 0;
  }
  std::printf(
      "Issuer (an account key: signs deploys, stops and durable commands)\n"
      "  public key: %s\n"
      "  seed file:  %s (secret: keep it to yourself)\n"
      "  A node accepts it when its config lists it: \"valid_issuers\": [\"%s\"]\n"
      "  (`cliCommand` durable commands run only on nodes that list their issuers.)\n"
      "Publisher xkey (seals workloads' environments to the node that runs them)\n"
      "  public key: %s\n"
      "  seed file:  %s (secret: keep it to yourself)\n",
      issuer_public.c_str(), issuer_file.c_str(), issuer_public.c_str(), xkey_public.c_str(),
      xkey_file.c_str());
  return 0;
}

}  // namespace

void register_keys_subcommand(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags) {
  auto o = std::make_shared<KeysOptions>();
  o->issuer_file = (nex_home() / "issuer.nk").string();
  o->xkey_file = (nex_home() / "publisher.xk").string();
  auto* cmd = app.add_subcommand(
      "keys", "Print the public keys of the CLI's issuer and publisher xkey, and their files");
  cmd->add_option("--issuer", o->issuer_file, "issuer account seed file (SA...)")
      ->capture_default_str();
  cmd->add_option("--xkey", o->xkey_file, "publisher xkey seed file (SX...)")
      ->capture_default_str();
  cmd->footer(
      "Makes ~/.nex/issuer.nk and ~/.nex/publisher.xk when missing, as devrun does. Never prints "
      "a seed.\nA node's config names the issuer in \"valid_issuers\" to accept only its deploys "
      "and commands (cliCommand requires it).");
  on_parsed(cmd, action, [o, &flags] { return show_keys(flags, *o); });
}

}  // namespace nex::cli
