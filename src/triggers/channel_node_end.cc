#include "triggers/channel_node_end.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "api/agent.h"
#include "triggers/frames.h"

namespace nex::triggers {

Result<std::shared_ptr<ChannelNodeEnd>> ChannelNodeEnd::open(
    UniqueFd fd, const nats::Connection& control, std::string workload_id,
    std::chrono::milliseconds answer_window) {
  const int flags = fcntl(fd.get(), F_GETFL);
  if (flags < 0 || fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) != 0)
    return fail(ErrorCode::kIo, std::string("trigger channel: ") + std::strerror(errno));
  UniqueFd wake(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid())
    return fail(ErrorCode::kIo, std::string("trigger channel: eventfd: ") + std::strerror(errno));
  std::shared_ptr<ChannelNodeEnd> channel(new ChannelNodeEnd(
      std::move(fd), std::move(wake), control, std::move(workload_id), answer_window));
  channel->thread_ = std::thread([c = channel.get()] { c->run(); });
  return channel;
}

ChannelNodeEnd::ChannelNodeEnd(UniqueFd fd, UniqueFd wake, const nats::Connection& control,
                               std::string workload_id, std::chrono::milliseconds answer_window)
    : fd_(std::move(fd)),
      wake_(std::move(wake)),
      control_(control),
      workload_id_(std::move(workload_id)),
      answer_window_(answer_window) {}

ChannelNodeEnd::~ChannelNodeEnd() { close(); }

void ChannelNodeEnd::forward(const nats::Message& trigger) {
  const std::string_view reply = trigger.reply();
  std::string frame;
  frame.reserve(32 + trigger.subject().size() + trigger.data().size());
  std::unique_lock lock(mu_);
  if (ended_) {
    lock.unlock();
    return answer_error(reply, "the function is not running", "503");
  }
  const uint64_t seq = reply.empty() ? 0 : next_seq_++;
  frames::append_trigger(frame, seq, trigger.subject(), trigger.data());
  if (waiting_.size() - waiting_from_ + frame.size() > kMaxWaitingBytes) {
    const size_t bytes = waiting_.size() - waiting_from_;
    lock.unlock();
    return answer_error(
        reply,
        "the function is overloaded: " + std::to_string(bytes) + " bytes of triggers wait for it",
        "503");
  }
  if (seq != 0)
    callers_[seq] = {std::string(reply), std::chrono::steady_clock::now() + answer_window_};
  const bool idle = waiting_from_ == waiting_.size();
  waiting_.append(frame);
  if (!idle) return;  // the channel's thread is already writing what waits, in order
  if (!flush_locked()) return stop_forwarding_locked();
  if (waiting_from_ < waiting_.size()) {
    const uint64_t one = 1;  // the socket is full: the thread writes the rest when it drains
    (void)!::write(wake_.get(), &one, sizeof one);
  }
}

bool ChannelNodeEnd::flush_locked() {
  while (waiting_from_ < waiting_.size()) {
    const ssize_t n = ::send(fd_.get(), waiting_.data() + waiting_from_,
                             waiting_.size() - waiting_from_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      waiting_from_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
  waiting_.clear();
  waiting_from_ = 0;
  return true;
}

void ChannelNodeEnd::stop_forwarding_locked() {
  // The agent no longer reads (it ended, or is undeploying): what waits is never sent. Its
  // callers, like those waiting for answers, hear from end() once the thread has read the
  // answers the agent wrote before it went.
  ended_ = true;
  waiting_.clear();
  waiting_from_ = 0;
}

void ChannelNodeEnd::run() {
  frames::FrameReader reader(frames::kMaxFrame);
  std::vector<frames::Answer> answers;
  for (bool open = true; open;) {
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    {
      std::lock_guard lock(mu_);
      if (waiting_from_ < waiting_.size()) fds[0].events |= POLLOUT;
    }
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return end("the node lost its channel to the function's agent");
    }
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      (void)!::read(wake_.get(), &count, sizeof count);
    }
    // Answers first, in order: what the agent wrote before it ended (or close()) still
    // reaches its callers.
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) open = reader.read_available(fd_.get());
    for (frames::Answer a;;) {
      auto got = reader.next(a);
      if (!got) {
        std::fprintf(stderr, "nex node: workload %s: %s; its triggers are no longer taken\n",
                     workload_id_.c_str(), got.error().message.c_str());
        ::shutdown(fd_.get(), SHUT_RDWR);
        return end("the function's agent broke the trigger channel");
      }
      if (!*got) break;
      answers.push_back(std::move(a));
    }
    for (auto& a : answers) deliver(a);
    answers.clear();
    if (open && (fds[0].revents & POLLOUT)) {
      std::lock_guard lock(mu_);
      if (!flush_locked()) stop_forwarding_locked();
    }
  }
  end(api::kFunctionStopped);
}

void ChannelNodeEnd::deliver(const frames::Answer& a) {
  std::string reply;
  {
    std::lock_guard lock(mu_);
    auto it = callers_.find(a.seq);
    if (it == callers_.end()) return;  // not ours to answer, or answered, or expired
    reply = std::move(it->second.reply);
    callers_.erase(it);
  }
  const int64_t max_payload = control_.max_payload();
  // The agent checks this itself (it knows the limit from its deploy request); here for a
  // server that changed under a reconnect.
  if (auto why = api::reply_too_large(a.body.size(), max_payload); !why.empty())
    return answer_error(reply, why, "500");
  auto msg = api::function_reply(reply, a.body, a.failed, a.runtime_ns, max_payload);
  if (msg) (void)control_.publish(*msg);
}

void ChannelNodeEnd::answer_error(std::string_view reply, const std::string& message,
                                  const char* code) {
  if (reply.empty()) return;
  auto msg = api::function_reply(reply, message, /*failed=*/true, std::nullopt,
                                 control_.max_payload(), code);
  if (msg) (void)control_.publish(*msg);
}

void ChannelNodeEnd::end(const std::string& why) {
  std::unordered_map<uint64_t, Caller> left;
  {
    std::lock_guard lock(mu_);
    stop_forwarding_locked();
    left.swap(callers_);
  }
  for (const auto& [seq, caller] : left) answer_error(caller.reply, why, "500");
}

void ChannelNodeEnd::close() {
  if (!thread_.joinable()) return;
  // What the agent wrote before it ended is still read; then the thread sees the end.
  ::shutdown(fd_.get(), SHUT_RDWR);
  thread_.join();
}

void ChannelNodeEnd::expire(std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mu_);
  std::erase_if(callers_, [now](const auto& entry) { return entry.second.expires < now; });
}

}  // namespace nex::triggers
