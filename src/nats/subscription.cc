#include "nats/subscription.h"

#include <condition_variable>
#include <mutex>

#include "nats/nats_status.h"

namespace nex::nats {

namespace {

// Waits until the server has answered a PING sent after the UNSUB: the read loop handles
// messages in order, so it is then done with every message for the subscription. When the
// connection is not connected there is nothing to wait for: the read loop that noticed the
// disconnect had finished with the messages it read (and libnats' flush would block for its
// whole timeout while reconnecting).
void fence(natsConnection* nc) {
  if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED) return;
  natsConnection_FlushTimeout(nc, 2000);
}

}  // namespace

// Owned jointly by the Subscription handle and libnats: freed by whichever of "the handle
// unsubscribed and fenced" and "libnats completed the subscription" happens last.
struct Subscription::State {
  std::mutex mu;
  std::condition_variable completed_cv;
  MessageHandler handler;
  natsConnection* nc = nullptr;
  natsSubscription* sub = nullptr;
  bool completed = false;  // libnats ran on_complete: no handler call is running or will run
  bool fenced = false;     // unsubscribed, and the read loop is past it
};

Subscription::State* Subscription::new_state(MessageHandler handler) {
  auto* state = new State;  // NOLINT: lifetime shared with libnats, see State
  state->handler = std::move(handler);
  return state;
}

void Subscription::discard(State* state) { delete state; }

Result<Subscription> Subscription::attach(State* state, natsConnection* nc, natsSubscription* sub) {
  state->nc = nc;
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
  finish(state, &State::completed);
}

void Subscription::finish(State* state, bool State::*flag) {
  {
    // Setting one's own flag and seeing the other's must be one step, so that exactly one of
    // the two parties frees the state.
    std::lock_guard lock(state->mu);
    state->*flag = true;
    if (flag == &State::completed) state->completed_cv.notify_all();
    if (!state->completed || !state->fenced) return;
  }
  natsSubscription_Destroy(state->sub);
  delete state;
}

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    unsubscribe();
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

void Subscription::unsubscribe() { stop(/*wait=*/false); }
void Subscription::unsubscribe_and_wait() { stop(/*wait=*/true); }

void Subscription::drain_and_wait(std::vector<Subscription>& subs,
                                  std::chrono::milliseconds timeout) {
  std::vector<bool> draining;
  for (auto& sub : subs) {
    draining.push_back(sub.state_ != nullptr &&
                       natsSubscription_DrainTimeout(sub.state_->sub, timeout.count()) == NATS_OK);
  }
  for (size_t i = 0; i < subs.size(); ++i) {
    if (draining[i]) {
      // libnats completes the subscription once the drain ends, or once its time is up.
      State* state = subs[i].state_;
      std::unique_lock lock(state->mu);
      state->completed_cv.wait(lock, [state] { return state->completed; });
    }
    subs[i].stop(/*wait=*/true);
  }
}

void Subscription::stop(bool wait) {
  State* state = std::exchange(state_, nullptr);
  if (state == nullptr) return;
  // Unsubscribe is safe even after completion: our reference keeps the libnats object alive.
  natsSubscription_Unsubscribe(state->sub);
  fence(state->nc);
  if (wait) {
    // libnats completes the subscription once its delivery thread is past the last handler
    // call; the state cannot be freed before we mark it fenced.
    std::unique_lock lock(state->mu);
    state->completed_cv.wait(lock, [state] { return state->completed; });
  }
  finish(state, &State::fenced);
}

SyncSubscription& SyncSubscription::operator=(SyncSubscription&& other) noexcept {
  if (this != &other) {
    close();
    nc_ = other.nc_;
    sub_ = std::exchange(other.sub_, nullptr);
  }
  return *this;
}

SyncSubscription::~SyncSubscription() { close(); }

void SyncSubscription::close() {
  if (sub_ == nullptr) return;
  natsSubscription_Unsubscribe(sub_);
  fence(nc_);
  natsSubscription_Destroy(std::exchange(sub_, nullptr));
}

size_t SyncSubscription::pending() const {
  int msgs = 0, bytes = 0;
  if (natsSubscription_GetPending(sub_, &msgs, &bytes) != NATS_OK || msgs < 0) return 0;
  return static_cast<size_t>(msgs);
}

bool SyncSubscription::valid() const { return natsSubscription_IsValid(sub_); }

void SyncSubscription::unsubscribe() { natsSubscription_Unsubscribe(sub_); }

Status SyncSubscription::drain(std::chrono::milliseconds timeout) {
  if (auto s = natsSubscription_DrainTimeout(sub_, timeout.count()); s != NATS_OK)
    return fail(to_error(s, "drain"));
  return {};
}

Result<Message> SyncSubscription::next(std::chrono::milliseconds timeout) {
  natsMsg* msg = nullptr;
  if (auto s = natsSubscription_NextMsg(&msg, sub_, timeout.count()); s != NATS_OK) {
    return fail(to_error(s, "next message"));
  }
  return Message(msg);
}

}  // namespace nex::nats
