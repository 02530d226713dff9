// Subscriptions. Subscription delivers to a handler on libnats' delivery thread; the handler
// object stays valid until libnats reports the subscription complete, so destroying a
// Subscription while a message is being delivered is safe for the handler itself. Destruction
// does not wait for that call to end (it may be waiting on something the destroyer is about to
// close): what the handler captures must outlive it, or call unsubscribe_and_wait() first.
// SyncSubscription is pulled with next().
//
// Unsubscribing costs one round trip to the server: libnats 3.4.1's read loop can still hold a
// subscription it looked up just before the UNSUB, and locks it after another thread freed it
// (fixed upstream in 3.6.1). A flush after the UNSUB proves the read loop is past every message
// for it; only then is the libnats subscription released.
#pragma once

#include <nats/nats.h>

#include <chrono>
#include <functional>
#include <vector>

#include "core/error.h"
#include "nats/msg.h"

namespace nex::nats {

using MessageHandler = std::function<void(Message)>;

class Subscription {
 public:
  Subscription() = default;
  Subscription(Subscription&& other) noexcept : state_(std::exchange(other.state_, nullptr)) {}
  Subscription& operator=(Subscription&& other) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription() { unsubscribe(); }

  bool valid() const { return state_ != nullptr; }
  // Stops delivery; idempotent. Messages already being handled finish.
  void unsubscribe();
  // Stops delivery and returns once no handler call is running: what the handler uses may then
  // go. Never from the subscription's own handler (it would wait for itself).
  void unsubscribe_and_wait();
  // For each subscription: stops interest at the server, delivers what was already received to
  // the handler, then unsubscribes and waits as above. The drains run together; after `timeout`
  // what is left is dropped. The subscriptions are then empty.
  static void drain_and_wait(std::vector<Subscription>& subs, std::chrono::milliseconds timeout);

 private:
  friend class Connection;
  friend class JetStream;
  struct State;
  // Creates the shared state and returns the closure to pass to libnats; attach() completes it.
  static State* new_state(MessageHandler handler);
  static void on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure);
  static void on_complete(void* closure);
  static void discard(State* state);  // for a failed subscribe: no libnats subscription exists
  static Result<Subscription> attach(State* state, natsConnection* nc, natsSubscription* sub);
  void stop(bool wait);
  // Marks one party done; the second to finish frees the state and the libnats subscription.
  static void finish(State* state, bool State::*flag);
  explicit Subscription(State* state) : state_(state) {}
  State* state_ = nullptr;
};

class SyncSubscription {
 public:
  SyncSubscription(natsConnection* nc, natsSubscription* sub) : nc_(nc), sub_(sub) {}
  SyncSubscription(SyncSubscription&& other) noexcept
      : nc_(other.nc_), sub_(std::exchange(other.sub_, nullptr)) {}
  SyncSubscription& operator=(SyncSubscription&& other) noexcept;
  SyncSubscription(const SyncSubscription&) = delete;
  SyncSubscription& operator=(const SyncSubscription&) = delete;
  ~SyncSubscription();

  // The next message, or kTimeout. Several threads may wait at once, but libnats wakes one only
  // when a message arrives to an empty queue: the others sleep on while more arrive.
  Result<Message> next(std::chrono::milliseconds timeout);
  // Messages received and not yet taken.
  size_t pending() const;
  // False once unsubscribed, or once its connection closed for good.
  bool valid() const;
  // Stops delivery, from any thread: a next() waiting elsewhere returns at once with an error,
  // as does every later one. Destroy the handle only once no next() is running.
  void unsubscribe();
  // Stops interest at the server but keeps what was already received: next() returns it, then
  // fails as after unsubscribe(). After `timeout` what is left is dropped. An error means the
  // subscription could not drain (its connection closed, say): unsubscribe instead.
  Status drain(std::chrono::milliseconds timeout);
  natsSubscription* raw() const { return sub_; }

 private:
  void close();
  natsConnection* nc_ = nullptr;
  natsSubscription* sub_ = nullptr;
};

}  // namespace nex::nats
