// `nex devrun`, `nex run` and `nex stop`: deploy a workload (the quick way or the explicit way)
// and stop one.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstring>

#include <cstdio>
#include <fstream>
#include <regex>

#include "api/control.h"
#include "api/signed_request.h"
#include "cli/control_client.h"
#include "cli/local_keys.h"
#include "cli/subcommands.h"
#include "commands/sender.h"
#include "commands/store.h"
#include "core/clock.h"
#include "core/elf_info.h"
#include "core/encoding.h"
#include "core/file_io.h"
#include "core/nuid.h"
#include "core/terminal_text.h"
#include "crypto/digest.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "nats/object_store.h"

namespace nex::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kDevBucket = "NEXCLIFILES";
// A deploy queued as a durable command is valid as long as the command streams keep it.
constexpr std::chrono::seconds kQueuedDeployLifetime{30 * 24 * 3600};

// The type of a workload from its first bytes and its name.
Result<api::WorkloadType> detect_type(std::string_view head, const std::string& name) {
  if (head.starts_with("\x7f"
                       "ELF"))
    return api::WorkloadType::kNative;
  if (head.starts_with(std::string_view("\0asm", 4))) return api::WorkloadType::kWasm;
  if (name.ends_with(".js")) return api::WorkloadType::kJavaScript;
  if (name.ends_with(".wasm")) return api::WorkloadType::kWasm;
  return fail(ErrorCode::kInvalidArgument,
              name +
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

// KEY=VALUE entries as the workload's environment; keys upper-cased as Nex does.
Result<std::map<std::string, std::string>> parse_env(const std::vector<std::string>& entries) {
  std::map<std::string, std::string> env;
  for (const auto& kv : entries) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return fail(ErrorCode::kInvalidArgument,
                  "environment entries are KEY=VALUE, got '" + kv + "'");
    std::string key = kv.substr(0, eq);
    for (char& c : key) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    env[key] = kv.substr(eq + 1);
  }
  return env;
}

// Who signs a deploy and seals its environment.
struct Signer {
  crypto::KeyPair issuer;
  crypto::XKey publisher;
};

Result<Signer> load_signer(const std::string& issuer_seed, const std::string& xkey_seed,
                           const std::string& where) {
  auto issuer = crypto::KeyPair::from_seed(issuer_seed);
  if (!issuer || issuer->type() != crypto::KeyType::kAccount)
    return fail(ErrorCode::kInvalidArgument,
                "the issuer key in " + where + " is not an account seed (SA...)");
  auto publisher = crypto::XKey::from_seed(xkey_seed);
  if (!publisher)
    return fail(ErrorCode::kInvalidArgument,
                "the publisher xkey in " + where + " is not a curve seed (SX...)");
  return Signer{*issuer, *publisher};
}

// What a deploy asks for, besides where the artifact is.
struct WorkloadOptions {
  std::vector<std::string> env;  // KEY=VALUE
  std::vector<std::string> triggers;
  std::vector<std::string> argv;
  std::string type;
  std::string name;
  std::string description;
  bool essential = false;
  bool replace = false;  // the node stops this issuer's others of the name once this one runs
  api::FunctionLimitsConfig limits;
};

struct Target {
  std::string node_id;
  std::string xkey;
  std::chrono::milliseconds deploy_wait{0};  // how long a deploy may take there
};

// A node that does not state its deploy deadline (an older nex, or Nex itself) gets this long.
constexpr std::chrono::seconds kUnstatedDeployWait{60};

// How long a deploy or a stop may take on a node, as its INFO states (deploy_deadline_ms): the
// CLI waits that long for the answer, whatever --timeout says, which is for quick answers.
std::chrono::milliseconds deploy_wait(const json& info) {
  auto ms = info.find("deploy_deadline_ms");
  if (ms != info.end() && ms->is_number_integer() && ms->get<int64_t>() > 0)
    return std::chrono::milliseconds(ms->get<int64_t>());
  return kUnstatedDeployWait;
}

// Why a deploy or stop request got no data back: the node refused it, or no answer came, which
// is no refusal: the node may still be `doing` it.
Error not_done(const Error& e, const std::string& node, std::chrono::milliseconds wait,
               const std::string& refused, const std::string& doing) {
  const std::string look = "the node may still be " + doing + ": `nex node info " + node + "`";
  if (e.code == ErrorCode::kTimeout) {
    const int64_t seconds = (wait.count() + 999) / 1000;
    return {e.code, "node " + node + ": no answer in " + std::to_string(seconds) + " s; " + look};
  }
  if (e.code == ErrorCode::kNoResponders)
    return {e.code, "node " + node + " does not answer (`nex node ls` lists the nodes that do)"};
  if (e.code == ErrorCode::kInvalidArgument) return e.wrap("node " + node + " " + refused);
  return {e.code, "node " + node + ": the answer was lost (" + e.message + "); " + look};
}

// The deploy request for `node` in namespace `ns`, its environment sealed to the node's xkey,
// signed by the issuer for this request alone (api/signed_request.h), valid for `lifetime`.
Result<json> deploy_request(const Signer& signer, const Target& node, const std::string& ns,
                            const api::Location& location, const std::string& hash,
                            api::WorkloadType type, const std::string& name,
                            const WorkloadOptions& o, std::chrono::seconds lifetime) {
  auto env = parse_env(o.env);
  if (!env) return fail(env.error());
  auto sealed = signer.publisher.seal(as_bytes(json(*env).dump()), node.xkey);
  if (!sealed) return fail(sealed.error().wrap("node xkey"));
  api::DeployRequest req;
  req.argv = o.argv;
  req.description = o.description;
  req.type = type;
  req.location = location;
  req.essential = o.essential;
  req.environment = base64_encode(*sealed, Base64::kStandard);
  req.sender_public_key = signer.publisher.public_key();
  req.target_node = node.node_id;
  req.trigger_subjects = o.triggers;
  req.hash = hash;
  req.workload_name = name;
  req.function_limits = o.limits;
  req.replace = o.replace;
  json body = api::to_json(req);
  json claims = {{"type", "workload"}};
  if (!hash.empty()) claims["hash"] = hash;
  api::sign_request(body,
                    {.action = api::action::kDeploy,
                     .ns = ns,
                     .subject = name,
                     .expires_at = unix_seconds_now() + lifetime.count(),
                     .claims = claims},
                    signer.issuer);
  return body;
}

// The node's answer to a deploy: the new workload, and those it replaced, stopped after it ran.
void print_accepted(const ConnectionFlags& flags, const std::string& name, const std::string& node,
                    const json& run) {
  if (flags.json) {
    std::printf("%s\n", json{{"node_id", node}, {"workload", run}}.dump(2).c_str());
    return;
  }
  std::printf(
      "🚀 Workload '%s' accepted. You can now refer to this workload with ID: %s on node %s\n",
      name.c_str(), terminal_safe(run.value("id", "")).c_str(), node.c_str());
  const json replaced = run.value("replaced", json::array());
  for (const auto& id : replaced.is_array() ? replaced : json::array()) {
    if (id.is_string())
      std::printf("Stopped the previous '%s' (%s)\n", name.c_str(),
                  terminal_safe(id.get<std::string>()).c_str());
  }
}

// Signs, seals and sends the deploy request; prints the node's answer.
int deploy(ControlClient& client, const ConnectionFlags& flags, const Signer& signer,
           const Target& node, const api::Location& location, const std::string& hash,
           api::WorkloadType type, const std::string& name, const WorkloadOptions& o) {
  auto req = deploy_request(signer, node, flags.ns, location, hash, type, name, o,
                            std::chrono::seconds(api::kDirectRequestLifetimeSeconds));
  if (!req) return report(req.error());
  auto run = client.request_resending("$NEX.DEPLOY." + flags.ns + "." + node.node_id, req->dump(),
                                      node.deploy_wait);
  if (!run)
    return report(not_done(run.error(), node.node_id, node.deploy_wait, "refused the workload",
                           "starting it"));
  print_accepted(flags, name, node.node_id, *run);
  return 0;
}

// --queue: the deploy request as a durable command to a node that may be offline now; it runs
// when the node connects. Waits a few seconds for a node that is online.
int queue_deploy(const nats::JetStream& js, const ConnectionFlags& flags, const Signer& signer,
                 const commands::NodeRecord& node, const api::Location& location,
                 const std::string& hash, api::WorkloadType type, const std::string& name,
                 const WorkloadOptions& o) {
  // Valid as long as the command waits for its node in the stream (kept 30 days).
  auto req = deploy_request(signer, {node.id, node.xkey}, flags.ns, location, hash, type, name, o,
                            kQueuedDeployLifetime);
  if (!req) return report(req.error());
  commands::Command c;
  c.to_node = node.name;
  c.method = commands::method::kDeploy;
  c.ns = flags.ns;
  c.deploy = *req;
  if (auto st = commands::ensure_streams(js); !st) return report(st.error());
  c.id = next_nuid();
  auto watch = commands::ResultWatch::start(js, c.id);
  if (!watch) return report(watch.error());
  auto sent = commands::send_command(js, c, signer.issuer, std::chrono::seconds(60));
  if (!sent) return report(sent.error());
  const std::string id = c.id;
  auto got = watch->wait({node.name}, std::chrono::steady_clock::now() + std::chrono::seconds(5));
  if (!got.empty() && commands::is_final(got.front().status)) {
    const auto& r = got.front();
    if (r.status != commands::status::kDone)
      return report({ErrorCode::kInvalidArgument,
                     "node " + node.name + " " + r.status + " the queued workload: " + r.reason});
    print_accepted(flags, name, node.id, json::parse(r.stdout_text, nullptr, false));
    return 0;
  }
  if (flags.json) {
    std::printf("%s\n", json{{"queued", id}, {"node", node.name}}.dump(2).c_str());
  } else {
    std::printf(
        "Queued '%s' for node %s as command %s: it deploys when the node connects "
        "(`nex cmd result %s` shows the outcome)\n",
        name.c_str(), node.name.c_str(), id.c_str(), id.c_str());
  }
  return 0;
}

Result<json> send_stop(ControlClient& client, const ConnectionFlags& flags,
                       const crypto::KeyPair& issuer, const Target& node,
                       const std::string& workload_id, const std::string& name) {
  const std::string& node_id = node.node_id;
  json body = api::to_json(api::StopRequest{.workload_id = workload_id, .target_node = node_id});
  api::sign_request(body,
                    {.action = api::action::kStop,
                     .ns = flags.ns,
                     .subject = name,
                     .expires_at = unix_seconds_now() + api::kDirectRequestLifetimeSeconds,
                     .claims = {{"type", "workload_stop"}}},
                    issuer);
  return client.request_resending("$NEX.STOP." + flags.ns + "." + node_id, body.dump(),
                                  node.deploy_wait);
}

// What a node says of itself and of its workloads in the namespace ($NEX.INFO).
Result<json> node_info(ControlClient& client, const ConnectionFlags& flags,
                       const std::string& node_id) {
  return client.request("$NEX.INFO." + flags.ns + "." + node_id);
}

struct DevrunOptions : WorkloadOptions {
  std::string file;
  std::string queue;  // a node name or id: deliver durably, even while it is offline
  bool stop_previous = true;
};

int devrun(const ConnectionFlags& flags, const DevrunOptions& o) {
  const fs::path file = o.file;
  if (!fs::is_regular_file(file))
    return report({ErrorCode::kNotFound, "file not found: " + o.file});
  std::string head(4, '\0');
  {
    std::ifstream in(file, std::ios::binary);
    in.read(head.data(), 4);
    head.resize(static_cast<size_t>(in.gcount()));
  }
  auto type = o.type.empty() ? detect_type(head, file.filename().string())
                             : api::parse_workload_type(o.type);
  if (!type) return report(type.error());
  if (*type == api::WorkloadType::kNative) {
    if (auto st = check_static_executable(file); !st)
      return report(st.error().wrap(o.file + " cannot run on a nex node"));
  }
  if (auto env = parse_env(o.env); !env) return report(env.error());
  auto issuer_seed = seed_file(nex_home() / "issuer.nk", "issuer account key", [] {
    return crypto::KeyPair::create(crypto::KeyType::kAccount)->seed();
  });
  if (!issuer_seed) return report(issuer_seed.error());
  auto xkey_seed = seed_file(nex_home() / "publisher.xk", "publisher xkey",
                             [] { return crypto::XKey::create().seed(); });
  if (!xkey_seed) return report(xkey_seed.error());
  auto signer = load_signer(*issuer_seed, *xkey_seed, nex_home().string());
  if (!signer) return report(signer.error());

  auto client = connect_control(flags, Reconnect::kYes);
  if (!client) return report(client.error());
  const std::string name = o.name.empty() ? workload_name_for(file) : o.name;
  WorkloadOptions w = o;
  if (w.description.empty()) w.description = "Workload published in devmode";
  // Replaced by the node, once the new one runs: a refused redeploy leaves the old one running,
  // and a queued devrun replaces as a direct one does.
  w.replace = o.stop_previous;
  if (!o.queue.empty()) {  // a named node, perhaps offline: no auction, a durable command
    auto js = nats::JetStream::create(client->connection());
    if (!js) return report(js.error());
    auto node = commands::find_node(*js, o.queue);
    if (!node) return report(node.error());
    auto store = nats::ObjectStore::create(
        *js, {.bucket = kDevBucket, .description = "files deployed with nex devrun"});
    if (!store) return report(store.error());
    auto put = store->put_file(name, file);
    if (!put) return report(put.error());
    return queue_deploy(*js, flags, *signer, *node, {kDevBucket, name},
                        nats::digest_hex(put->digest), *type, name, w);
  }
  // The first node that bids for this type gets the workload.
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
  auto info = node_info(*client, flags, node_id);
  if (!info) return report(info.error().wrap("node " + node_id));
  const Target node{node_id, (*nodes)[0].value("target_xkey", ""), deploy_wait(*info)};

  auto js = nats::JetStream::create(client->connection());
  if (!js) return report(js.error());
  auto store = nats::ObjectStore::create(
      *js, {.bucket = kDevBucket, .description = "files deployed with nex devrun"});
  if (!store) return report(store.error());
  auto put = store->put_file(name, file);
  if (!put) return report(put.error());

  return deploy(*client, flags, *signer, node, {kDevBucket, name}, nats::digest_hex(put->digest),
                *type, name, w);
}

// What `nex run` vouches for: the artifact as this CLI read it.
struct Artifact {
  std::string hash;  // hex SHA-256 of the bytes read
  std::string head;  // the first bytes (up to 4), for its type
};

// Streams the artifact at `location`, hashing its bytes as they arrive. The hash signed is this
// one, never the digest the bucket's metadata states: whoever can write that metadata must not
// choose what the issuer vouches for. The bytes must still match the metadata's size and digest
// (the node checks them against it), and a metadata without a digest is refused, since nothing
// would then check what the node runs. `expected_hash` (the user's --hash), when given, must be
// the bytes' hash too.
Result<Artifact> read_artifact(const nats::ObjectStore& store, const api::Location& location,
                               const std::string& expected_hash) {
  const std::string where = location.to_string();
  crypto::Sha256 sha;
  Artifact a;
  auto got = store.get(location.key, [&](std::string_view chunk) -> Status {
    if (a.head.size() < 4) a.head.append(chunk.substr(0, 4 - a.head.size()));
    sha.update(as_bytes(chunk));
    return {};
  });
  if (!got && got.error().code == ErrorCode::kCorrupt) {
    return fail(ErrorCode::kCorrupt, where +
                                         ": its bytes do not match the size and SHA-256 digest "
                                         "its metadata states, so nex will not vouch for them (" +
                                         got.error().message + ")");
  }
  if (!got) return fail(got.error().wrap(where));
  if (nats::digest_hex(got->digest).empty()) {
    return fail(ErrorCode::kCorrupt,
                where + ": its metadata states no SHA-256 digest, so no node could check the " +
                    "bytes it runs; put the object again with a NATS client");
  }
  a.hash = hex_encode(sha.finish());
  if (!expected_hash.empty() && a.hash != expected_hash) {
    return fail(ErrorCode::kInvalidArgument,
                where + ": its SHA-256 is " + a.hash + ", not the --hash " + expected_hash);
  }
  return a;
}

// --hash: 64 hex digits, compared in lower case; empty when not given.
Result<std::string> parse_hash_flag(std::string hash) {
  static const std::regex kHex("[0-9a-fA-F]{64}");
  if (!hash.empty() && !std::regex_match(hash, kHex)) {
    return fail(ErrorCode::kInvalidArgument,
                "--hash must be 64 hex digits (the artifact's SHA-256, as sha256sum prints it), "
                "got '" +
                    hash + "'");
  }
  for (char& c : hash) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return hash;
}

struct RunOptions : WorkloadOptions {
  std::string url;   // nats://BUCKET/key
  std::string hash;  // the artifact's hex SHA-256, as the user knows it (optional)
  std::string node_id;
  std::string xkey_file;
  std::string issuer_file;
  bool queue = false;  // NODE may be offline: deliver durably
};

int run(const ConnectionFlags& flags, const RunOptions& o) {
  auto location = api::parse_location(o.url);
  if (!location) return report(location.error());
  auto expected_hash = parse_hash_flag(o.hash);
  if (!expected_hash) return report(expected_hash.error());
  if (auto st = api::validate_workload_name(o.name); !st) return report(st.error());
  if (auto env = parse_env(o.env); !env) return report(env.error());
  auto issuer_seed = read_seed(o.issuer_file, "issuer key");
  if (!issuer_seed) return report(issuer_seed.error());
  auto xkey_seed = read_seed(o.xkey_file, "publisher xkey");
  if (!xkey_seed) return report(xkey_seed.error());
  auto signer = load_signer(*issuer_seed, *xkey_seed, o.issuer_file + " / " + o.xkey_file);
  if (!signer) return report(signer.error());

  auto client = connect_control(flags, Reconnect::kYes);
  if (!client) return report(client.error());
  auto js = nats::JetStream::create(client->connection());
  if (!js) return report(js.error());
  std::optional<commands::NodeRecord> queued;
  Target node;
  if (o.queue) {
    auto rec = commands::find_node(*js, o.node_id);
    if (!rec) return report(rec.error());
    queued = *rec;
    node = {rec->id, rec->xkey};
  } else {
    auto info = node_info(*client, flags, o.node_id);
    if (!info) {
      return report({info.error().code, "node " + o.node_id + " did not answer on " + flags.server +
                                            "; `nex node ls` lists the nodes that do (or "
                                            "--queue delivers when it connects)"});
    }
    node = {o.node_id, info->value("public_xkey", ""), deploy_wait(*info)};
  }

  // The artifact must exist; the hash of its bytes is what the JWT vouches for, its first bytes
  // say its type.
  auto store = nats::ObjectStore::bind(*js, location->bucket);
  if (!store) return report(store.error().wrap(flags.server));
  auto artifact = read_artifact(*store, *location, *expected_hash);
  if (!artifact) return report(artifact.error());
  auto type = o.type.empty() ? detect_type(artifact->head, location->key)
                             : api::parse_workload_type(o.type);
  if (!type) return report(type.error());
  if (queued)
    return queue_deploy(*js, flags, *signer, *queued, *location, artifact->hash, *type, o.name, o);
  return deploy(*client, flags, *signer, node, *location, artifact->hash, *type, o.name, o);
}

int stop(const ConnectionFlags& flags, const std::string& node_id, const std::string& workload_id,
         const std::string& issuer_file) {
  auto seed = read_seed(issuer_file, "issuer key");
  if (!seed) return report(seed.error());
  auto issuer = crypto::KeyPair::from_seed(*seed);
  if (!issuer) return report(issuer.error().wrap(issuer_file));
  auto client = connect_control(flags, Reconnect::kYes);
  if (!client) return report(client.error());
  // The stop JWT names the workload: learn its name from the node.
  auto info = node_info(*client, flags, node_id);
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
  const Target node{node_id, info->value("public_xkey", ""), deploy_wait(*info)};
  auto r = send_stop(*client, flags, *issuer, node, workload_id, name);
  if (!r)
    return report(not_done(r.error(), node_id, node.deploy_wait, "refused to stop " + workload_id,
                           "stopping it"));
  if (flags.json) {
    std::printf("%s\n", r->dump(2).c_str());
  } else {
    std::printf("Workload %s (%s) stopped\n", workload_id.c_str(), name.c_str());
  }
  return 0;
}

// The flags devrun and run share.
void add_workload_options(CLI::App* cmd, WorkloadOptions& o) {
  cmd->add_option("env", o.env, "KEY=VALUE environment entries (encrypted to the node)");
  // One value each (repeat the flag): KEY=VALUE entries after it stay the environment.
  cmd->add_option("--trigger_subject", o.triggers, "subject that triggers a function (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--type", o.type, "native, v8 or wasm (default: detected from the file)")
      ->check(CLI::IsMember({"native", "v8", "wasm"}));
  cmd->add_option("--argv", o.argv, "an argument for the workload (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--description", o.description, "what the workload is, for `nex node info`");
  cmd->add_flag("--essential", o.essential, "restart the workload when it fails");
  cmd->add_option("--function_timeout", o.limits.timeout_ms,
                  "functions: time limit per invocation, ms (default 5000)");
  cmd->add_option("--function_memory", o.limits.memory_mib,
                  "functions: memory limit, MiB (default 256)");
  cmd->add_option("--function_concurrency", o.limits.concurrency,
                  "functions: invocations run at once (default: cores, at most 4)");
  cmd->add_option("--function_isolation", o.limits.global_scope,
                  "JavaScript: invocation (a fresh global each time, the default) or workload "
                  "(one global per engine, built-ins frozen; state may persist between "
                  "invocations)")
      ->check(CLI::IsMember({"invocation", "workload"}));
}

}  // namespace

void register_workload_subcommands(CLI::App& app, SubcommandAction& action,
                                   ConnectionFlags& flags) {
  auto d = std::make_shared<DevrunOptions>();
  auto* dev =
      app.add_subcommand("devrun", "Upload a file and run it on a node, with keys made for you");
  dev->add_option("file", d->file, "a static Linux executable, a .js or a .wasm file")->required();
  add_workload_options(dev, *d);
  dev->add_option("--name", d->name, "workload name (default: the file's name)");
  dev->add_option("--queue", d->queue,
                  "deploy to this node (name or id) as a durable command: it runs when the node "
                  "connects, even if it is offline now");
  dev->add_option("--stop", d->stop_previous,
                  "replace the workload of the same name once this one runs (refused if it is of "
                  "another type)")
      ->capture_default_str();
  dev->footer(
      "Creates ~/.nex/issuer.nk and ~/.nex/publisher.xk when missing, uploads the file to the "
      "object store bucket NEXCLIFILES and deploys it to the first node that bids for it.\n"
      "Example: nex devrun ./echoservice NATS_URL=nats://127.0.0.1:4222");
  on_parsed(dev, action, [d, &flags] { return devrun(flags, *d); });

  auto r = std::make_shared<RunOptions>();
  r->xkey_file = (nex_home() / "publisher.xk").string();
  r->issuer_file = (nex_home() / "issuer.nk").string();
  auto* run_cmd = app.add_subcommand(
      "run", "Run a workload already in an object store on a given node, stating everything");
  run_cmd->add_option("url", r->url, "where the artifact is: nats://BUCKET/key")->required();
  run_cmd->add_option("node", r->node_id, "the node's id (N...)")->required();
  add_workload_options(run_cmd, *r);
  run_cmd->add_option("--xkey", r->xkey_file, "publisher xkey seed file (SX...)")
      ->capture_default_str();
  run_cmd->add_option("--issuer", r->issuer_file, "issuer account seed file (SA...)")
      ->capture_default_str();
  run_cmd->add_option("--name", r->name, "workload name, [a-zA-Z0-9_-]+")->required();
  run_cmd->add_option("--hash", r->hash,
                      "the artifact's SHA-256 (64 hex digits) as you know it: the run is refused "
                      "unless the object's bytes have it");
  run_cmd->add_flag("--queue", r->queue,
                    "NODE may be offline (a name or id): deliver the deploy durably, it runs when "
                    "the node connects");
  run_cmd->footer(
      "Reads the whole object and signs the SHA-256 of its bytes (never the digest its metadata "
      "states); refuses an object whose bytes do not match its metadata.\n"
      "Example: nex run --xkey=./keys/publisher.xk --issuer=./keys/issuer.nk --name=echoservice "
      "--description='This is the echo service' nats://MYFILES/echoservice NODE_ID "
      "nats_url=nats://127.0.0.1:4222");
  on_parsed(run_cmd, action, [r, &flags] { return run(flags, *r); });

  auto node_id = std::make_shared<std::string>();
  auto workload_id = std::make_shared<std::string>();
  auto issuer = std::make_shared<std::string>((nex_home() / "issuer.nk").string());
  auto* st = app.add_subcommand("stop", "Stop a workload (signed by the issuer that deployed it)");
  st->add_option("node", *node_id, "node id")->required();
  st->add_option("workload", *workload_id, "workload id")->required();
  st->add_option("--issuer", *issuer, "the issuer's account seed file")->capture_default_str();
  on_parsed(st, action, [=, &flags] { return stop(flags, *node_id, *workload_id, *issuer); });
}

}  // namespace nex::cli
