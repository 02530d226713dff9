// A function's invocations, reported to the node in batches: whatever finished within 20 ms
// travels as one message on hostint.{id}.invocations. Per-invocation messages cost
// the agent, the internal server and the node one delivery each, which under load came to about
// as much CPU as running a WebAssembly function; a batch costs one. Replies never wait for it.
#pragma once

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/agent.h"
#include "nats/connection.h"

namespace nex::agent {

class InvocationReporter {
 public:
  // Publishes on `out`, which must outlive the reporter.
  InvocationReporter(const nats::Connection& out, std::string subject);
  ~InvocationReporter();  // sends what is pending
  InvocationReporter(const InvocationReporter&) = delete;
  InvocationReporter& operator=(const InvocationReporter&) = delete;

  void add(api::InvocationReport report);
  // Sends what is pending now (before the agent answers an undeploy). Returns once every
  // report added before the call is published, including a batch the reporter's own thread
  // had taken and not yet sent.
  void flush();

 private:
  void run();

  const nats::Connection& out_;
  const std::string subject_;
  std::mutex publish_mu_;  // held from taking a batch until it is published
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::InvocationReport> pending_;  // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  std::thread thread_;
};

}  // namespace nex::agent
