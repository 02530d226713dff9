#include "triggers/channel_agent_end.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <vector>

namespace nex::triggers {

using Clock = std::chrono::steady_clock;

bool ChannelAnswers::answer(uint64_t seq, const runtime::InvocationResult& result,
                            int64_t runtime_ns) {
  if (seq == 0) return true;  // its caller wanted no answer
  std::string frame;
  frame.reserve(32 + result.body.size());
  frames::append_answer(frame, seq, !result.ok, runtime_ns, result.body);
  std::lock_guard lock(mu_);
  for (size_t sent = 0; sent < frame.size();) {
    const ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

ChannelTriggerSource::Next ChannelTriggerSource::next(std::chrono::milliseconds wait,
                                                      runtime::Invocation& out) {
  const auto deadline = Clock::now() + wait;
  std::unique_lock lock(mu_);
  for (;;) {
    if (!ready_.empty()) {
      frames::Trigger trigger = std::move(ready_.front());
      ready_.pop_front();
      lock.unlock();
      out = convert_(std::move(trigger));
      return Next::kInvocation;
    }
    if (ended_) return Next::kClosed;
    if (receiving_) {  // another worker reads; it hands on what it does not take itself
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && ready_.empty() && !ended_)
        return Next::kTimeout;
      continue;
    }
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Next::kTimeout;
    receiving_ = true;
    lock.unlock();
    const bool open = receive(left);
    lock.lock();
    receiving_ = false;
    if (!open) ended_ = true;
    cv_.notify_all();  // frames for others, the end, or the reading handed on
    if (ready_.empty() && !ended_ && Clock::now() >= deadline) return Next::kTimeout;
  }
}

bool ChannelTriggerSource::receive(std::chrono::milliseconds wait) {
  pollfd pfd{fd_, POLLIN, 0};
  const int polled = ::poll(&pfd, 1, static_cast<int>(wait.count()));
  if (polled == 0 || (polled < 0 && errno == EINTR)) return true;
  if (polled < 0) return false;
  // At the end: the node closed its end, or the agent is undeploying (close()).
  bool open = reader_.read_available(fd_);
  std::vector<frames::Trigger> got;
  for (frames::Trigger t;;) {
    auto more = reader_.next(t);
    if (!more) {
      std::fprintf(stderr, "nex-agent: %s; no more triggers are taken\n",
                   more.error().message.c_str());
      open = false;
      break;
    }
    if (!*more) break;
    got.push_back(std::move(t));
  }
  std::lock_guard lock(mu_);
  for (auto& t : got) ready_.push_back(std::move(t));
  return open;
}

size_t ChannelTriggerSource::backlog() {
  std::lock_guard lock(mu_);
  int unread = 0;  // bytes in the socket while no worker is there to read them
  if (!receiving_ && ::ioctl(fd_, FIONREAD, &unread) != 0) unread = 0;
  return ready_.size() + (unread > 0 ? 1 : 0);
}

void ChannelTriggerSource::close() {
  // Reads now return what the node wrote before it asked for the undeploy, then the end.
  ::shutdown(fd_, SHUT_RD);
}

}  // namespace nex::triggers
