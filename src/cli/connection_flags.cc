#include "cli/connection_flags.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/file_io.h"

namespace nex::cli {

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// Where the nats CLI keeps its configuration: the contexts in context/NAME.json, and the name of
// the one `nats context select` chose in context.txt.
std::filesystem::path nats_config_dir() {
  if (const char* xdg = env("XDG_CONFIG_HOME")) return std::filesystem::path(xdg) / "nats";
  const char* home = env("HOME");
  return std::filesystem::path(home ? home : "/root") / ".config/nats";
}

// The context `nats context select` chose: context.txt's content, trimmed; empty when none is.
std::string selected_context() {
  std::string name = read_file(nats_config_dir() / "context.txt").value_or("");
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  name.erase(name.begin(), std::find_if(name.begin(), name.end(), not_space));
  name.erase(std::find_if(name.rbegin(), name.rend(), not_space).base(), name.end());
  return name;
}

}  // namespace

void ConnectionFlags::add_to(CLI::App& app) {
  app.add_option("-s,--server", server,
                 "NATS server URL(s), comma separated (default: env NATS_URL, the context's "
                 "url, else nats://127.0.0.1:4222)");
  app.add_option("--context", context,
                 "a nats CLI context (~/.config/nats/context/NAME.json; env NATS_CONTEXT; "
                 "default: the one `nats context select` chose): its url, credentials and TLS "
                 "files, unless flags say otherwise");
  app.add_option("--user", user, "NATS user name");
  app.add_option("--password", password, "NATS password");
  app.add_option("--token", token, "NATS authentication token");
  app.add_option("--creds", creds, "NATS credentials file (user JWT and seed)");
  app.add_option("--nkey", nkey, "file holding a NATS user nkey seed");
  app.add_option("--tlscert", tls_cert, "TLS client certificate");
  app.add_option("--tlskey", tls_key, "TLS client key");
  app.add_option("--tlsca", tls_ca, "TLS certificate authority");
  app.add_option("--timeout", timeout_seconds, "time to wait for NATS and for answers, in seconds")
      ->capture_default_str();
  const char* ns_env = std::getenv("NEX_NAMESPACE");
  if (ns_env && *ns_env) ns = ns_env;
  app.add_option("--namespace", ns, "namespace of the workloads (env NEX_NAMESPACE)")
      ->capture_default_str();
  app.add_flag("--json", json, "print machine-readable JSON");
  app.add_option("--js-domain", js_domain,
                 "JetStream domain (durable commands from a leaf server whose JetStream is its "
                 "hub's)");
}

Status ConnectionFlags::apply_context() {
  if (server.empty()) {
    if (const char* url = env("NATS_URL")) server = url;
  }
  // As the nats CLI: --context, else NATS_CONTEXT, else the selected context, if any.
  std::string selected_in;
  if (context.empty()) {
    if (const char* name = env("NATS_CONTEXT")) context = name;
  }
  if (context.empty()) {
    context = selected_context();
    if (!context.empty()) selected_in = (nats_config_dir() / "context.txt").string();
  }
  if (!context.empty()) NEX_RETURN_IF_ERROR(take_context(selected_in));
  if (server.empty()) server = "nats://127.0.0.1:4222";
  return {};
}

// Fills what the flags left empty from the context's file. `selected_in` names context.txt when
// the name came from there, for the error message.
Status ConnectionFlags::take_context(const std::string& selected_in) {
  const std::string where = selected_in.empty() ? "" : ", selected in " + selected_in;
  if (context.find('/') != std::string::npos || context.starts_with('.'))
    return fail(ErrorCode::kInvalidArgument,
                "--context takes a context's name, not a path: got '" + context + "'" + where);
  const auto path = nats_config_dir() / "context" / (context + ".json");
  auto text = read_file(path);
  if (!text)
    return fail(ErrorCode::kNotFound, "no nats context '" + context + "' (" + path.string() + ")" +
                                          where + "; `nats context add` makes one" +
                                          (where.empty() ? ""
                                                         : ", `nats context select` "
                                                           "chooses another"));
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object())
    return fail(ErrorCode::kInvalidArgument, path.string() + " is not a JSON object");
  auto take = [&](std::string& field, const char* key) {
    auto it = j.find(key);
    if (field.empty() && it != j.end() && it->is_string()) field = it->get<std::string>();
  };
  take(server, "url");
  take(user, "user");
  take(password, "password");
  take(token, "token");
  take(creds, "creds");
  take(nkey, "nkey");
  take(tls_cert, "cert");
  take(tls_key, "key");
  take(tls_ca, "ca");
  take(js_domain, "jetstream_domain");
  take(inbox_prefix, "inbox_prefix");
  return {};
}

Result<nats::ConnectOptions> ConnectionFlags::options(const std::string& client_name) const {
  nats::ConnectOptions o;
  o.name = client_name;
  o.urls.clear();
  std::stringstream list(server);
  for (std::string url; std::getline(list, url, ',');) {
    if (!url.empty()) o.urls.push_back(url);
  }
  o.user = user;
  o.password = password;
  o.token = token;
  o.inbox_prefix = inbox_prefix;
  o.creds_file = creds;
  if (!nkey.empty()) {
    std::ifstream in(nkey);
    if (!in)
      return fail(ErrorCode::kNotFound,
                  "cannot read nkey seed file " + nkey + ": " + std::strerror(errno));
    in >> o.nkey_seed;
  }
  if (!tls_cert.empty() || !tls_key.empty() || !tls_ca.empty()) {
    o.tls = nats::TlsOptions{.ca_file = tls_ca, .cert_file = tls_cert, .key_file = tls_key};
  }
  o.connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  return o;
}

}  // namespace nex::cli
