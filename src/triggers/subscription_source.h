// TriggerSource: a function's trigger subscription as the source of its invocations. The
// function's workers take each trigger from libnats themselves, as the connection's reader
// queued it; an asynchronous subscription would add a delivery thread that hands every
// trigger on to a worker, one more thread wake-up per invocation.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>

#include "nats/subscription.h"
#include "runtime/function.h"

namespace nex::triggers {

class TriggerSource final : public runtime::InvocationSource {
 public:
  // Makes a trigger message an invocation: its subject, payload, and how it is answered.
  using Convert = std::function<runtime::Invocation(nats::Message)>;

  TriggerSource(nats::SyncSubscription sub, Convert convert)
      : sub_(std::move(sub)), convert_(std::move(convert)) {}

  Next next(std::chrono::milliseconds wait, runtime::Invocation& out) override;
  size_t backlog() override { return sub_.pending(); }
  // Workers in next() now: waiting for a trigger, or receiving one.
  size_t waiting() const { return waiting_; }
  // Drains the subscription: next() returns the triggers already received, then kClosed.
  // Those still not taken after api::kTriggerDrainTimeout go unanswered.
  void close() override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  // One worker at a time waits in libnats, which wakes a waiter only when a message arrives to
  // an empty queue; the others wait here. A worker hands the wait on as soon as it received.
  bool receiving_ = false;
  bool closed_ = false;
  std::atomic<size_t> waiting_{0};
  nats::SyncSubscription sub_;
  Convert convert_;
};

}  // namespace nex::triggers
