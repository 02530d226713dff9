#include "cli/connection_flags.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace nex::cli {

void ConnectionFlags::add_to(CLI::App& app) {
  const char* env = std::getenv("NATS_URL");
  server = env && *env ? env : "nats://127.0.0.1:4222";
  app.add_option("-s,--server", server, "NATS server URL(s), comma separated (env NATS_URL)")
      ->capture_default_str();
  app.add_option("--user", user, "NATS user name");
  app.add_option("--password", password, "NATS password");
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
  o.creds_file = creds;
  if (!nkey.empty()) {
    std::ifstream in(nkey);
    if (!in) return fail(ErrorCode::kNotFound, "cannot read nkey seed file " + nkey);
    in >> o.nkey_seed;
  }
  if (!tls_cert.empty() || !tls_key.empty() || !tls_ca.empty()) {
    o.tls = nats::TlsOptions{.ca_file = tls_ca, .cert_file = tls_cert, .key_file = tls_key};
  }
  o.connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  return o;
}

}  // namespace nex::cli
