#include "nats/connection.h"

#include <sodium.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <thread>

#include "core/nuid.h"
#include "core/sodium.h"
#include "crypto/nkeys.h"
#include "nats/nats_status.h"

namespace nex::nats {
namespace {

constexpr int kLoginAttempts = 8;  // a spurious failure is 1/256, eight in a row ~1e-19

struct OptionsDeleter {
  void operator()(natsOptions* o) const { natsOptions_Destroy(o); }
};
using OptionsPtr = std::unique_ptr<natsOptions, OptionsDeleter>;

}  // namespace

struct Connection::Impl {
  natsConnection* nc = nullptr;
  ConnectOptions options;
  std::optional<crypto::KeyPair> nkey;  // signs the server nonce for nkey logins
  std::mutex mu;
  std::condition_variable closed_cv;
  bool closed = false;
  // The server's limit, read at connect and at each reconnect: reading it from libnats takes
  // the connection's lock, which its reader holds much of the time on a busy connection.
  std::atomic<int64_t> max_payload{0};

  // The steps of Connection::connect.
  Status load_key();
  natsStatus set_login(natsOptions* o);
  natsStatus set_callbacks(natsOptions* o);
  Status dial(natsOptions* o);

  ~Impl() {
    if (nc == nullptr) return;
    natsConnection_Close(nc);
    // The closed callback is the last one libnats runs with our closure; wait for it so no
    // callback can touch this object after it is freed.
    std::unique_lock lock(mu);
    closed_cv.wait_for(lock, std::chrono::seconds(5), [this] { return closed; });
    lock.unlock();
    natsConnection_Destroy(nc);
  }

  static void on_disconnected(natsConnection*, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    if (self->options.on_disconnected) self->options.on_disconnected();
  }
  static void on_reconnected(natsConnection*, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    self->max_payload = natsConnection_GetMaxPayload(self->nc);
    if (self->options.on_reconnected) self->options.on_reconnected();
  }
  static void on_closed(natsConnection*, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    if (self->options.on_closed) self->options.on_closed();
    std::lock_guard lock(self->mu);
    self->closed = true;
    self->closed_cv.notify_all();
  }
  static void on_error(natsConnection*, natsSubscription*, natsStatus status, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    if (self->options.on_async_error) self->options.on_async_error(to_error(status, "async error"));
  }
  static int64_t reconnect_delay(natsConnection*, int attempts, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    const int64_t min = self->options.reconnect_wait_min.count();
    const int64_t max = self->options.reconnect_wait_max.count();
    int64_t delay = min;
    for (int i = 1; i < attempts && delay < max; ++i) delay *= 2;
    delay = std::min(delay, max);
    // Up to 10% jitter so a fleet of nodes does not reconnect in lockstep.
    const int64_t jitter = delay / 10;
    return delay + (jitter > 0
                        ? static_cast<int64_t>(randombytes_uniform(static_cast<uint32_t>(jitter)))
                        : 0);
  }
  static natsStatus user_jwt(char** jwt, char** err_text, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    *jwt = strdup(self->options.user_jwt.c_str());
    (void)err_text;
    return *jwt ? NATS_OK : NATS_NO_MEMORY;
  }
  static natsStatus sign_nonce(char** err_text, unsigned char** signature, int* length,
                               const char* nonce, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    if (!self->nkey) {
      *err_text = strdup("no nkey configured");
      return NATS_ERR;
    }
    const auto sig = self->nkey->sign(as_bytes(nonce));
    *signature = static_cast<unsigned char*>(malloc(sig.size()));
    if (*signature == nullptr) return NATS_NO_MEMORY;
    std::memcpy(*signature, sig.data(), sig.size());
    *length = static_cast<int>(sig.size());
    return NATS_OK;
  }
};

// libnats spins up to 2000 times (each a `pause`, ~100 µs in all) on a contended mutex before
// it sleeps. With more busy threads than cores, as on a small host running a node, its agents
// and their callers, the lock's holder is often not running: spinning then only burns the CPU
// it needs. Measured with 32 requesters on one connection, the spin was a fifth of all CPU.
static void open_library() {
  static std::once_flag once;
  std::call_once(once, [] { (void)nats_Open(/*lockSpinCount=*/0); });
}

// The steps of Connection::connect, on libnats' options `o` (natsStatus: the first failure).
namespace {

natsStatus set_servers(natsOptions* o, const ConnectOptions& options) {
  std::vector<const char*> urls;
  for (const auto& u : options.urls) urls.push_back(u.c_str());
  natsStatus s = natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(o, true);
  if (s == NATS_OK && !options.name.empty()) s = natsOptions_SetName(o, options.name.c_str());
  if (s == NATS_OK && options.send_asap) s = natsOptions_SetSendAsap(o, true);
  if (s == NATS_OK) s = natsOptions_SetTimeout(o, options.connect_timeout.count());
  if (s == NATS_OK && !options.inbox_prefix.empty()) {
    s = natsOptions_SetCustomInboxPrefix(o, options.inbox_prefix.c_str());
  }
  return s;
}

natsStatus set_tls(natsOptions* o, const ConnectOptions& options) {
  if (!options.tls) return NATS_OK;
  natsStatus s = natsOptions_SetSecure(o, true);
  if (s == NATS_OK && !options.tls->ca_file.empty()) {
    s = natsOptions_LoadCATrustedCertificates(o, options.tls->ca_file.c_str());
  }
  if (s == NATS_OK && !options.tls->cert_file.empty()) {
    s = natsOptions_LoadCertificatesChain(o, options.tls->cert_file.c_str(),
                                          options.tls->key_file.c_str());
  }
  if (s == NATS_OK && options.tls->skip_verify) s = natsOptions_SkipServerVerification(o, true);
  return s;
}

}  // namespace

// The key that signs the server's nonce: the seed's, or, for a user JWT without its seed (a
// bearer user's, `nsc add user --bearer`), one made for the purpose: the server checks no
// signature, but libnats still signs the nonce.
Status Connection::Impl::load_key() {
  if (!options.nkey_seed.empty()) {
    auto kp = crypto::KeyPair::from_seed(options.nkey_seed);
    if (!kp) return fail(kp.error().wrap("nkey seed"));
    nkey = std::move(*kp);
  }
  if (!options.user_jwt.empty() && !nkey) {
    auto throwaway = crypto::KeyPair::create(crypto::KeyType::kUser);
    if (!throwaway) return fail(throwaway.error().wrap("connect"));
    nkey = std::move(*throwaway);
  }
  return {};
}

natsStatus Connection::Impl::set_login(natsOptions* o) {
  natsStatus s = NATS_OK;
  if (!options.user.empty())
    s = natsOptions_SetUserInfo(o, options.user.c_str(), options.password.c_str());
  if (s == NATS_OK && !options.token.empty()) s = natsOptions_SetToken(o, options.token.c_str());
  if (s == NATS_OK && nkey && !options.user_jwt.empty()) {
    s = natsOptions_SetUserCredentialsCallbacks(o, &Impl::user_jwt, this, &Impl::sign_nonce, this);
  } else if (s == NATS_OK && nkey) {
    s = natsOptions_SetNKey(o, nkey->public_key().c_str(), &Impl::sign_nonce, this);
  }
  if (s == NATS_OK && !options.creds_file.empty()) {
    s = natsOptions_SetUserCredentialsFromFiles(o, options.creds_file.c_str(), nullptr);
  }
  return s;
}

natsStatus Connection::Impl::set_callbacks(natsOptions* o) {
  natsStatus s = natsOptions_SetAllowReconnect(o, options.reconnect);
  if (s == NATS_OK && options.reconnect) {
    s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(o, &Impl::reconnect_delay, this);
  }
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, &Impl::on_disconnected, this);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, &Impl::on_reconnected, this);
  if (s == NATS_OK) s = natsOptions_SetClosedCB(o, &Impl::on_closed, this);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, &Impl::on_error, this);
  return s;
}

// Connects; a signed login that the server refuses is tried again, as each attempt gets a
// fresh nonce from the server, hence a fresh signature.
Status Connection::Impl::dial(natsOptions* o) {
  const bool signed_login = nkey.has_value() || !options.creds_file.empty();
  const int attempts = signed_login ? kLoginAttempts : 1;
  for (int attempt = 1;; ++attempt) {
    const natsStatus s = natsConnection_Connect(&nc, o);
    if (s == NATS_OK) break;
    nc = nullptr;
    const bool auth_failure = s == NATS_CONNECTION_AUTH_FAILED || s == NATS_NOT_PERMITTED;
    if (!auth_failure || attempt >= attempts) {
      std::string joined;
      for (const auto& u : options.urls) joined += (joined.empty() ? "" : ",") + redacted_url(u);
      return fail(to_error(s, "cannot connect to NATS at " + joined));
    }
  }
  max_payload = natsConnection_GetMaxPayload(nc);
  return {};
}

Result<Connection> Connection::connect(const ConnectOptions& options) {
  ensure_sodium();
  open_library();
  if (options.urls.empty())
    return fail(ErrorCode::kInvalidArgument, "connect: no server URL given");
  auto impl = std::make_shared<Impl>();
  impl->options = options;
  NEX_RETURN_IF_ERROR(impl->load_key());
  natsOptions* raw_opts = nullptr;
  if (auto s = natsOptions_Create(&raw_opts); s != NATS_OK) return fail(to_error(s, "connect"));
  OptionsPtr opts(raw_opts);
  natsOptions* o = opts.get();
  natsStatus s = set_servers(o, options);
  if (s == NATS_OK) s = impl->set_login(o);
  if (s == NATS_OK) s = set_tls(o, options);
  if (s == NATS_OK) s = impl->set_callbacks(o);
  if (s != NATS_OK) return fail(to_error(s, "connect: invalid options"));
  NEX_RETURN_IF_ERROR(impl->dial(o));
  return Connection(std::move(impl));
}

Status Connection::publish(std::string_view subject, std::string_view data,
                           std::string_view reply) const {
  // No natsMsg to allocate and free: libnats writes the publish straight from these bytes.
  if (data.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    return fail(ErrorCode::kInvalidArgument,
                "payload of " + std::to_string(data.size()) + " bytes is too large to publish");
  const std::string subj(subject);
  const int len = static_cast<int>(data.size());
  if (reply.empty())
    return check(natsConnection_Publish(impl_->nc, subj.c_str(), data.data(), len),
                 "publish on '" + subj + "'");
  const std::string rep(reply);
  return check(
      natsConnection_PublishRequest(impl_->nc, subj.c_str(), rep.c_str(), data.data(), len),
      "publish on '" + subj + "'");
}

Status Connection::publish(const Message& msg) const {
  return check(natsConnection_PublishMsg(impl_->nc, msg.raw()),
               "publish on '" + std::string(msg.subject()) + "'");
}

Result<Message> Connection::request(std::string_view subject, std::string_view data,
                                    std::chrono::milliseconds timeout) const {
  auto msg = Message::create(subject, data);
  if (!msg) return fail(msg.error());
  return request(*msg, timeout);
}

Result<Message> Connection::request(const Message& msg, std::chrono::milliseconds timeout) const {
  natsMsg* reply = nullptr;
  if (auto s = natsConnection_RequestMsg(&reply, impl_->nc, msg.raw(), timeout.count());
      s != NATS_OK) {
    return fail(to_error(s, "request on '" + std::string(msg.subject()) + "'"));
  }
  return Message(reply);
}

Result<Subscription> Connection::subscribe(std::string_view subject, MessageHandler handler,
                                           std::string_view queue) const {
  const std::string subj(subject);
  const std::string q(queue);
  auto* state = Subscription::new_state(std::move(handler));
  natsSubscription* sub = nullptr;
  natsStatus s = q.empty() ? natsConnection_Subscribe(&sub, impl_->nc, subj.c_str(),
                                                      &Subscription::on_message, state)
                           : natsConnection_QueueSubscribe(&sub, impl_->nc, subj.c_str(), q.c_str(),
                                                           &Subscription::on_message, state);
  if (s != NATS_OK) {
    Subscription::discard(state);
    return fail(to_error(s, "subscribe to '" + subj + "'"));
  }
  return Subscription::attach(state, impl_->nc, sub);
}

Result<SyncSubscription> Connection::subscribe_sync(std::string_view subject,
                                                    std::string_view queue) const {
  const std::string subj(subject);
  const std::string q(queue);
  natsSubscription* sub = nullptr;
  natsStatus s = q.empty()
                     ? natsConnection_SubscribeSync(&sub, impl_->nc, subj.c_str())
                     : natsConnection_QueueSubscribeSync(&sub, impl_->nc, subj.c_str(), q.c_str());
  if (s != NATS_OK) return fail(to_error(s, "subscribe to '" + subj + "'"));
  return SyncSubscription(impl_->nc, sub);
}

Status Connection::flush(std::chrono::milliseconds timeout) const {
  return check(natsConnection_FlushTimeout(impl_->nc, timeout.count()), "flush");
}

std::string Connection::new_inbox() const {
  const auto& prefix = impl_->options.inbox_prefix;
  return (prefix.empty() ? std::string("_INBOX") : prefix) + "." + next_nuid();
}

std::string Connection::connected_url() const {
  char buf[256] = {0};
  if (natsConnection_GetConnectedUrl(impl_->nc, buf, sizeof buf) != NATS_OK) return {};
  return redacted_url(buf);
}

std::string redacted_url(std::string_view url) {
  const size_t scheme = url.find("://");
  const size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
  const size_t at = url.find('@', start);
  if (at == std::string_view::npos || url.find('/', start) < at) return std::string(url);
  return std::string(url.substr(0, start)) + "***" + std::string(url.substr(at));
}

Status Connection::last_error() const {
  const char* text = nullptr;
  const natsStatus s = natsConnection_GetLastError(impl_->nc, &text);
  if (s == NATS_OK) return {};
  return fail(to_error(s, text ? text : ""));
}

int64_t Connection::max_payload() const { return impl_->max_payload.load(); }

bool Connection::connected() const {
  return natsConnection_Status(impl_->nc) == NATS_CONN_STATUS_CONNECTED;
}

natsConnection* Connection::raw() const { return impl_->nc; }

}  // namespace nex::nats
