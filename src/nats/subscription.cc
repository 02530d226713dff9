#include "nats/subscription.h"

#include <mutex>

#include "nats/nats_status.h"

namespace nex::nats {

// Owned jointly by the Subscription handle and libnats: freed by whichever of "handle released"
// and "libnats completed the subscription" happens last.
struct Subscription::State {
  std::mutex mu;
  MessageHandler handler;
  natsSubscription* sub = nullptr;
  bool completed = false;
  bool released = false;
};

Subscription::State* Subscription::new_state(MessageHandler handler) {
  auto* state = new State;  // NOLINT: lifetime shared with libnats, see State
  state->handler = std::move(handler);
  return state;
}

void Subscription::discard(State* state) { delete state; }

Result<Subscription> Subscription::attach(State* state, natsSubscription* sub) {
  state->sub = sub;
  if (auto s = natsSubscription_SetOnCompleteCB(sub, &Subscription::on_complete, state);
      s != NATS_OK) {
    natsSubscription_Unsubscribe(sub);
    // Without the completion callback we cannot know when the handler is done: leak the small
    // state rather than risk a use-after-free.
    return fail(to_error(s, "subscribe"));
  }
  return Subscription(state);
}

void Subscription::on_message(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  static_cast<State*>(closure)->handler(Message(msg));
}

void Subscription::on_complete(void* closure) {
  auto* state = static_cast<State*>(closure);
  bool free_now = false;
  {
    std::lock_guard lock(state->mu);
    state->completed = true;
    free_now = state->released;
  }
  if (free_now) {
    natsSubscription_Destroy(state->sub);
    delete state;
  }
}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    unsubscribe();
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

void Subscription::unsubscribe() {
  State* state = std::exchange(state_, nullptr);
  if (state == nullptr) return;
  bool free_now = false;
  {
    std::lock_guard lock(state->mu);
    state->released = true;
    if (!state->completed) natsSubscription_Unsubscribe(state->sub);
    free_now = state->completed;
  }
  if (free_now) {
    natsSubscription_Destroy(state->sub);
    delete state;
  }
}

SyncSubscription& SyncSubscription::operator=(SyncSubscription&& other) noexcept {
  if (this != &other) {
    if (sub_ != nullptr) {
      natsSubscription_Unsubscribe(sub_);
      natsSubscription_Destroy(sub_);
    }
    sub_ = std::exchange(other.sub_, nullptr);
  }
  return *this;
}

SyncSubscription::~SyncSubscription() {
  if (sub_ != nullptr) {
    natsSubscription_Unsubscribe(sub_);
    natsSubscription_Destroy(sub_);
  }
}

Result<Message> SyncSubscription::next(std::chrono::milliseconds timeout) {
  natsMsg* msg = nullptr;
  if (auto s = natsSubscription_NextMsg(&msg, sub_, timeout.count()); s != NATS_OK) {
    return fail(to_error(s, "next message"));
  }
  return Message(msg);
}

}  // namespace nex::nats
