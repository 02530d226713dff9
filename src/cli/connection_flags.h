// The NATS connection flags every nex command shares (-s/--server, credentials, TLS, a `nats`
// CLI context), turned into ConnectOptions.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "core/error.h"
#include "nats/connection.h"

namespace nex::cli {

struct ConnectionFlags {
  std::string server;  // default: $NATS_URL, else the context's url, else nats://127.0.0.1:4222
  // --context, env NATS_CONTEXT, else ~/.config/nats/context.txt (what `nats context select`
  // chose): ~/.config/nats/context/NAME.json
  std::string context;
  std::string token;
  std::string user;
  std::string password;
  std::string creds;
  std::string nkey;  // a file holding a user nkey seed
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  double timeout_seconds = 2.0;
  std::string ns = "default";  // --namespace, env NEX_NAMESPACE
  bool json = false;           // --json: machine-readable output
  std::string js_domain;       // --js-domain: JetStream of a hub, from a leaf server
  std::string inbox_prefix;    // from a context

  void add_to(CLI::App& app);
  // After parsing: fills what the flags left empty from the `nats` context that --context,
  // NATS_CONTEXT or else `nats context select` names (the nats CLI's files, so
  // `nex --context ExpAdmin devrun ...` works as the secured-NATS walkthrough types it), then the
  // defaults. Explicit flags and NATS_URL win over the context.
  Status apply_context();
  Result<nats::ConnectOptions> options(const std::string& client_name) const;
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  }

 private:
  Status take_context(const std::string& selected_in);
};

}  // namespace nex::cli
