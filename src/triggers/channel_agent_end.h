// The agent's end of the node's trigger channel (triggers/frames.h): a stream socket it
// inherits at start when it runs on the node's host (process and namespace sandboxes). When the
// node relays a function's triggers, they arrive here instead of on the internal NATS, and the
// answers go back the same way.
//
// ChannelTriggerSource is the function's source of invocations. As with TriggerSource, the
// function's workers read the socket themselves, one at a time, with no thread in between; what
// one read brings beyond a trigger waits for the next worker. While every worker is busy nothing
// reads: the triggers wait in the socket and then in the node, which bounds them.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "runtime/function.h"
#include "triggers/frames.h"

namespace nex::triggers {

// Writes answers to the channel, from any worker.
class ChannelAnswers {
 public:
  explicit ChannelAnswers(int fd) : fd_(fd) {}
  // False once the node's end is gone.
  bool answer(uint64_t seq, const runtime::InvocationResult& result, int64_t runtime_ns);

 private:
  int fd_;
  std::mutex mu_;
};

class ChannelTriggerSource final : public runtime::InvocationSource {
 public:
  // Makes a trigger an invocation: its subject, payload, and how it is answered.
  using Convert = std::function<runtime::Invocation(frames::Trigger)>;

  // `fd` stays the caller's (blocking, as inherited); it must outlive the source.
  ChannelTriggerSource(int fd, Convert convert) : fd_(fd), convert_(std::move(convert)) {}

  Next next(std::chrono::milliseconds wait, runtime::Invocation& out) override;
  size_t backlog() override;
  // The node sends nothing after it asked the agent to undeploy: the triggers already written
  // are still taken, then next() reports the end.
  void close() override;

 private:
  // Reads what the socket holds, waiting up to `wait` for something; false at its end.
  bool receive(std::chrono::milliseconds wait);

  int fd_;
  Convert convert_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<frames::Trigger> ready_;  // read, not yet taken
  bool receiving_ = false;             // a worker is reading the socket; the others wait here
  bool ended_ = false;                 // nothing more comes from the socket
  frames::FrameReader reader_{frames::kMaxFrame};  // the receiver's
};

}  // namespace nex::triggers
