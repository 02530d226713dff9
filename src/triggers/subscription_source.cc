#include "triggers/subscription_source.h"

#include "api/agent.h"

namespace nex::triggers {

using Clock = std::chrono::steady_clock;

TriggerSource::Next TriggerSource::next(std::chrono::milliseconds wait, runtime::Invocation& out) {
  const auto deadline = Clock::now() + wait;
  struct Waiting {
    std::atomic<size_t>& n;
    explicit Waiting(std::atomic<size_t>& count) : n(count) { ++n; }
    ~Waiting() { --n; }
  } waiting(waiting_);
  std::unique_lock lock(mu_);
  if (!cv_.wait_until(lock, deadline, [this] { return closed_ || !receiving_; }))
    return Next::kTimeout;
  if (closed_) return Next::kClosed;
  receiving_ = true;
  lock.unlock();
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    auto msg = sub_.next(std::max(left, std::chrono::milliseconds(0)));
    // An error other than a time-out with the subscription still valid is libnats reporting
    // that it dropped messages (more arrived than its pending limits hold): carry on.
    if (!msg && msg.error().code != ErrorCode::kTimeout && sub_.valid()) continue;
    lock.lock();
    receiving_ = false;
    // Nothing more comes once the subscription failed, or ended: libnats reports the end of a
    // drain as a time-out, and the subscription is then no longer valid.
    if (!msg && (msg.error().code != ErrorCode::kTimeout || !sub_.valid())) closed_ = true;
    if (closed_) {
      cv_.notify_all();
    } else {
      cv_.notify_one();
    }
    if (!msg) return closed_ ? Next::kClosed : Next::kTimeout;
    lock.unlock();
    out = convert_(std::move(*msg));
    return Next::kInvocation;
  }
}

void TriggerSource::close() {
  // The server sends no more, and the triggers already here are still taken (the function
  // answers them with an error) before next() reports the end: their callers hear at once
  // instead of timing out.
  if (sub_.drain(api::kTriggerDrainTimeout)) return;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  sub_.unsubscribe();  // a worker waiting in libnats returns
}

}  // namespace nex::triggers
