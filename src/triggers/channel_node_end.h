// ChannelNodeEnd: the node's end of the stream socket an agent on this host inherits at start
// (process and namespace sandboxes; triggers/frames.h has the frames). When the node relays a
// function's triggers (see route.h), each trigger it receives on the control NATS goes to
// the agent as one write on this socket, and each answer comes back as one read and goes to the
// caller, with no NATS server in between (the internal NATS added a server hop each way).
//
// The agent is not trusted: only sequence numbers the node issued are answered, each once, and
// never beyond its answer window; a malformed frame ends the channel. Writing never blocks the
// node: what the socket cannot take at once waits in memory, up to kMaxWaitingBytes, and a
// trigger beyond that is answered at once that the function is overloaded (503).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/unique_fd.h"
#include "nats/connection.h"
#include "triggers/frames.h"

namespace nex::triggers {

class ChannelNodeEnd {
 public:
  // Triggers waiting in the node for the agent to read them, at most (as libnats lets a
  // subscription's pending messages grow to 64 MiB before it drops them).
  static constexpr size_t kMaxWaitingBytes = size_t{64} << 20;

  // Takes over `fd`, the node's end; answers go to callers on `control`, which must outlive the
  // channel. A caller whose answer has not come within `answer_window` is forgotten.
  static Result<std::shared_ptr<ChannelNodeEnd>> open(UniqueFd fd, const nats::Connection& control,
                                                      std::string workload_id,
                                                      std::chrono::milliseconds answer_window);
  ~ChannelNodeEnd();

  // A trigger received on the control NATS, for the agent.
  void forward(const nats::Message& trigger);
  // Once the agent has ended: reads the answers it wrote before it went, tells the callers still
  // waiting that the function stopped, and ends the channel. Idempotent.
  void close();
  // Forgets callers whose answer window has passed.
  void expire(std::chrono::steady_clock::time_point now);

 private:
  ChannelNodeEnd(UniqueFd fd, UniqueFd wake, const nats::Connection& control,
                 std::string workload_id, std::chrono::milliseconds answer_window);
  void run();  // the channel's thread: answers in, triggers the socket could not take at once out
  // Writes what waits; false when the socket failed (the agent is gone).
  bool flush_locked();
  void stop_forwarding_locked();
  void deliver(const frames::Answer& answer);  // to its caller, if it has one
  void answer_error(std::string_view reply, const std::string& message, const char* code);
  void end(const std::string& why);  // no more triggers; callers waiting get `why`

  UniqueFd fd_;
  UniqueFd wake_;  // an eventfd: the thread polls for writing once triggers wait
  const nats::Connection& control_;
  const std::string workload_id_;
  const std::chrono::milliseconds answer_window_;

  std::mutex mu_;  // guards what follows, and writes to fd_
  struct Caller {
    std::string reply;
    std::chrono::steady_clock::time_point expires;
  };
  std::unordered_map<uint64_t, Caller> callers_;
  uint64_t next_seq_ = 1;
  std::string waiting_;      // frames the socket has not taken yet
  size_t waiting_from_ = 0;  // how much of waiting_ was written
  bool ended_ = false;
  std::thread thread_;
};

}  // namespace nex::triggers
