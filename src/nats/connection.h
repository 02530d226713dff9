// Connection: a NATS client connection with the options a NATS user expects (server list,
// user/password, token, nkey seed, creds file, TLS, reconnect forever with backoff, lifecycle
// callbacks). A Connection is a cheap, copyable handle: copies share one underlying connection,
// which is closed when the last handle goes away.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "nats/msg.h"
#include "nats/subscription.h"

namespace nex::nats {

struct TlsOptions {
  std::string ca_file;    // trust these CAs (PEM); empty uses the system store
  std::string cert_file;  // client certificate (PEM), with key_file
  std::string key_file;
  bool skip_verify = false;
};

struct ConnectOptions {
  std::vector<std::string> urls{"nats://127.0.0.1:4222"};
  std::string name;  // shown by the server's /connz
  std::string user;
  std::string password;
  std::string token;
  std::string nkey_seed;     // a user nkey seed ("SU…"): login by signing the server's nonce
  std::string user_jwt;      // operator mode, the user's JWT: with nkey_seed, a .creds in memory;
                             // alone, a bearer user's
  std::string creds_file;    // a .creds file (user JWT + seed)
  std::string inbox_prefix;  // replaces "_INBOX" for request replies (for narrow permissions)
  std::optional<TlsOptions> tls;
  std::chrono::milliseconds connect_timeout{2000};
  // Write each publish at once. libnats otherwise lets its flusher wait ~1 ms to batch writes,
  // which a message relayed through several hops pays at every hop.
  bool send_asap = false;
  // Reconnect forever, waiting reconnect_wait_min, doubling per attempt up to reconnect_wait_max.
  bool reconnect = true;
  std::chrono::milliseconds reconnect_wait_min{100};
  std::chrono::milliseconds reconnect_wait_max{5000};
  // Invoked from libnats' callback thread; keep them short.
  std::function<void()> on_disconnected;
  std::function<void()> on_reconnected;
  std::function<void()> on_closed;
  std::function<void(const Error&)> on_async_error;  // e.g. slow consumer
};

// A server URL as logs and errors show it: a user, password or token in it becomes "***"
// (nats://***@host:4222).
std::string redacted_url(std::string_view url);

class Connection {
 public:
  // Connects to the first reachable server. Nkey and creds logins are retried a few times: libnats
  // 3.4.1 drops signatures that begin with a zero byte, so ~1 in 256 logins fail spuriously.
  static Result<Connection> connect(const ConnectOptions& options);

  Status publish(std::string_view subject, std::string_view data,
                 std::string_view reply = {}) const;
  Status publish(const Message& msg) const;
  Result<Message> request(std::string_view subject, std::string_view data,
                          std::chrono::milliseconds timeout) const;
  Result<Message> request(const Message& msg, std::chrono::milliseconds timeout) const;

  // An empty queue means a plain subscription.
  Result<Subscription> subscribe(std::string_view subject, MessageHandler handler,
                                 std::string_view queue = {}) const;
  Result<SyncSubscription> subscribe_sync(std::string_view subject,
                                          std::string_view queue = {}) const;

  Status flush(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  std::string connected_url() const;  // redacted_url()
  // The largest message (headers included) the connected server accepts.
  int64_t max_payload() const;
  // The last error the server reported on this connection (a permissions violation for a
  // subscription or publish, say), as an error; ok when there was none. flush() first to hear
  // about what was just sent.
  Status last_error() const;
  bool connected() const;

  natsConnection* raw() const;
  // A fresh reply subject under this connection's inbox prefix (ConnectOptions::inbox_prefix,
  // else "_INBOX"), where a narrowly permitted user may receive.
  std::string new_inbox() const;

 private:
  struct Impl;
  explicit Connection(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace nex::nats
