// `nex devrun` and `nex stop`: deploy a file to a node the quick way, and stop a workload.
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <regex>

#include "api/control.h"
#include "cli/commands.h"
#include "core/elf_info.h"
#include "core/encoding.h"
#include "crypto/digest.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "nats/object_store.h"

namespace nex::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kDevBucket = "NEXCLIFILES";

fs::path nex_home() {
  const char* home = std::getenv("HOME");
  return fs::path(home && *home ? home : "/tmp") / ".nex";
}

// Reads a seed from `path`, or creates one (mode 0600) with `make`, saying which.
Result<std::string> seed_file(const fs::path& path, const char* what,
                              const std::function<std::string()>& make) {
  if (fs::exists(path)) {
    std::ifstream in(path);
    std::string seed;
    in >> seed;
    std::printf("Reusing existing %s: %s\n", what, path.c_str());
    return seed;
  }
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  ::chmod(path.parent_path().c_str(), 0700);
  const std::string seed = make();
  {
    std::ofstream out(path);
    out << seed << "\n";
    if (!out) return fail(ErrorCode::kIo, "cannot write " + path.string());
  }
  ::chmod(path.c_str(), 0600);
  std::printf("Created %s: %s\n", what, path.c_str());
  return seed;
}

Result<api::WorkloadType> detect_type(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic,
                                      "\x7f"
                                      "ELF",
                                      4) == 0)
    return api::WorkloadType::kNative;
  if (in.gcount() == 4 && std::memcmp(magic, "\0asm", 4) == 0) return api::WorkloadType::kWasm;
  if (file.extension() == ".js") return api::WorkloadType::kV8;
  if (file.extension() == ".wasm") return api::WorkloadType::kWasm;
  return fail(ErrorCode::kInvalidArgument,
              file.string() +
                  " is neither a Linux executable, a .js nor a .wasm file: "
                  "say what it is with --type native|v8|wasm");
}

// "./echoservice" -> "echoservice"; anything outside [a-zA-Z0-9_-] becomes '-'.
std::string workload_name_for(const fs::path& file) {
  std::string name = file.stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '-';
  }
  return name.empty() ? "workload" : name;
}

struct DevrunOptions {
  std::string file;
  std::vector<std::string> env;  // KEY=VALUE
  std::vector<std::string> triggers;
  std::vector<std::string> argv;
  std::string type;
  std::string name;
  bool essential = false;
  bool stop_previous = true;
};

int devrun(const ConnectionFlags& flags, const DevrunOptions& o) {
  const fs::path file = o.file;
  if (!fs::is_regular_file(file))
    return report({ErrorCode::kNotFound, "file not found: " + o.file});
  auto type = o.type.empty() ? detect_type(file) : api::parse_workload_type(o.type);
  if (!type) return report(type.error());
  if (*type == api::WorkloadType::kNative) {
    if (auto st = check_static_executable(file); !st)
      return report(st.error().wrap(o.file + " cannot run on a nex node"));
  }
  std::map<std::string, std::string> env;
  for (const auto& kv : o.env) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return report(
          {ErrorCode::kInvalidArgument, "environment entries are KEY=VALUE, got '" + kv + "'"});
    }
    std::string key = kv.substr(0, eq);
    for (char& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    env[key] = kv.substr(eq + 1);
  }
  auto issuer_seed = seed_file(nex_home() / "issuer.nk", "issuer account key", [] {
    return crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
  });
  if (!issuer_seed) return report(issuer_seed.error());
  auto xkey_seed = seed_file(nex_home() / "publisher.xk", "publisher xkey",
                             [] { return crypto::XKey::create().seed(); });
  if (!xkey_seed) return report(xkey_seed.error());
  auto issuer = crypto::KeyPair::from_seed(*issuer_seed);
  auto publisher = crypto::XKey::from_seed(*xkey_seed);
  if (!issuer || !publisher)
    return report({ErrorCode::kCorrupt, "the keys in " + nex_home().string() + " are damaged"});

  auto client = connect_control(flags);
  if (!client) return report(client.error());
  // Choose a node that can run this type.
  // Choose the first node that bids.
  auto nodes = client->gather(
      "$NEX.AUCTION", json{{"os", "linux"}, {"workload_types", {api::to_string(*type)}}}.dump(), 1);
  if (!nodes) return report(nodes.error());
  if (nodes->empty()) {
    return report({ErrorCode::kNotFound, "no nex node that runs " +
                                             std::string(api::to_string(*type)) +
                                             " workloads answered on " + flags.server +
                                             ": start one with `nex node up` (or `nex up`)"});
  }
  const std::string node_id = (*nodes)[0].value("node_id", "");
  const std::string node_xkey = (*nodes)[0].value("target_xkey", "");

  // Upload the file.
  auto js = nats::JetStream::create(client->connection());
  if (!js) return report(js.error());
  auto store = nats::ObjectStore::create(
      *js, {.bucket = kDevBucket, .description = "files deployed with nex devrun"});
  if (!store) return report(store.error());
  const std::string name = o.name.empty() ? workload_name_for(file) : o.name;
  auto put = store->put_file(name, file);
  if (!put) return report(put.error());
  std::string hash;
  if (auto raw = base64_decode(std::string_view(put->digest).substr(8), Base64::kUrl); raw)
    hash = hex_encode(*raw);

  // Replace what an earlier devrun of the same name left on that node.
  if (o.stop_previous) {
    auto info = client->request("$NEX.INFO." + flags.ns + "." + node_id);
    for (const auto& m : info ? info->value("machines", json::array()) : json::array()) {
      if (m.value("workload", json::object()).value("name", "") != name) continue;
      const std::string jwt =
          crypto::encode_jwt({.sub = name, .nats = {{"type", "workload_stop"}}}, *issuer);
      auto stopped = client->request(
          "$NEX.STOP." + flags.ns + "." + node_id,
          json{{"workload_id", m.value("id", "")}, {"workload_jwt", jwt}, {"target_node", node_id}}
              .dump());
      if (stopped)
        std::printf("Stopped the previous '%s' (%s)\n", name.c_str(), m.value("id", "").c_str());
    }
  }

  json env_json(env);
  auto sealed = publisher->seal(as_bytes(env_json.dump()), node_xkey);
  if (!sealed) return report(sealed.error().wrap("node xkey"));
  api::DeployRequest req;
  req.argv = o.argv;
  req.description = "Workload published in devmode";
  req.type = *type;
  req.location = {kDevBucket, name};
  req.essential = o.essential;
  req.workload_jwt =
      crypto::encode_jwt({.sub = name, .nats = {{"type", "workload"}, {"hash", hash}}}, *issuer);
  req.environment = base64_encode(*sealed, Base64::kStandard);
  req.sender_public_key = publisher->public_key();
  req.target_node = node_id;
  req.trigger_subjects = o.triggers;
  req.hash = hash;
  req.workload_name = name;
  auto run = client->request("$NEX.DEPLOY." + flags.ns + "." + node_id, api::to_json(req).dump());
  if (!run) return report(run.error().wrap("node " + node_id + " refused the workload"));
  const std::string id = run->value("id", "");
  if (flags.json) {
    std::printf("%s\n", run->dump(2).c_str());
  } else {
    std::printf(
        "🚀 Workload '%s' accepted. You can now refer to this workload with ID: %s on node %s\n",
        name.c_str(), id.c_str(), node_id.c_str());
  }
  return 0;
}

int stop(const ConnectionFlags& flags, const std::string& node_id, const std::string& workload_id,
         const std::string& issuer_file) {
  std::ifstream in(issuer_file);
  std::string seed;
  if (!(in >> seed))
    return report({ErrorCode::kNotFound, "cannot read the issuer key " + issuer_file});
  auto issuer = crypto::KeyPair::from_seed(seed);
  if (!issuer) return report(issuer.error().wrap(issuer_file));
  auto client = connect_control(flags);
  if (!client) return report(client.error());
  // The stop JWT names the workload: learn its name from the node.
  auto info = client->request("$NEX.INFO." + flags.ns + "." + node_id);
  if (!info) return report(info.error().wrap("node " + node_id));
  std::string name;
  for (const auto& m : info->value("machines", json::array())) {
    if (m.value("id", "") == workload_id)
      name = m.value("workload", json::object()).value("name", "");
  }
  if (name.empty()) {
    return report({ErrorCode::kNotFound, "node " + node_id + " runs no workload " + workload_id +
                                             " in namespace " + flags.ns});
  }
  const std::string jwt =
      crypto::encode_jwt({.sub = name, .nats = {{"type", "workload_stop"}}}, *issuer);
  auto r = client->request(
      "$NEX.STOP." + flags.ns + "." + node_id,
      json{{"workload_id", workload_id}, {"workload_jwt", jwt}, {"target_node", node_id}}.dump());
  if (!r) return report(r.error().wrap("node " + node_id + " refused to stop " + workload_id));
  std::printf("Workload %s (%s) stopped\n", workload_id.c_str(), name.c_str());
  return 0;
}

}  // namespace

void register_workload_commands(CLI::App& app, CommandAction& action, ConnectionFlags& flags) {
  auto o = std::make_shared<DevrunOptions>();
  auto* dev =
      app.add_subcommand("devrun", "Upload a file and run it on a node, with keys made for you");
  dev->add_option("file", o->file, "a static Linux executable, a .js or a .wasm file")->required();
  dev->add_option("env", o->env, "KEY=VALUE environment entries (encrypted to the node)");
  dev->add_option("--trigger_subject", o->triggers,
                  "subject that triggers a function (repeatable)");
  dev->add_option("--type", o->type, "native, v8 or wasm (default: detected from the file)");
  dev->add_option("--argv", o->argv, "arguments for the workload");
  dev->add_option("--name", o->name, "workload name (default: the file's name)");
  dev->add_flag("--essential", o->essential, "restart the workload when it fails");
  dev->add_option("--stop", o->stop_previous, "stop the previous workload of the same name first")
      ->capture_default_str();
  dev->callback([o, &action, &flags] { action = [o, &flags] { return devrun(flags, *o); }; });

  auto node_id = std::make_shared<std::string>();
  auto workload_id = std::make_shared<std::string>();
  auto issuer = std::make_shared<std::string>((nex_home() / "issuer.nk").string());
  auto* st = app.add_subcommand("stop", "Stop a workload (signed by the issuer that deployed it)");
  st->add_option("node", *node_id, "node id")->required();
  st->add_option("workload", *workload_id, "workload id")->required();
  st->add_option("--issuer", *issuer, "the issuer's account seed file")->capture_default_str();
  st->callback([=, &action, &flags] {
    action = [=, &flags] { return stop(flags, *node_id, *workload_id, *issuer); };
  });
}

}  // namespace nex::cli
