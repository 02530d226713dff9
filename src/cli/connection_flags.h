// The NATS connection flags every nex command shares (-s/--server, credentials, TLS), turned
// into ConnectOptions.
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "core/error.h"
#include "nats/connection.h"

namespace nex::cli {

struct ConnectionFlags {
  std::string server;  // default: $NATS_URL, else nats://127.0.0.1:4222
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

  void add_to(CLI::App& app);
  Result<nats::ConnectOptions> options(const std::string& client_name) const;
  std::chrono::milliseconds timeout() const {
    return std::chrono::milliseconds(static_cast<int64_t>(timeout_seconds * 1000));
  }
};

}  // namespace nex::cli
