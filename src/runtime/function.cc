#include "runtime/function.h"
#include "runtime/engine.h"
#include "runtime/worker_pool.h"

#include <algorithm>
#include <future>
#include <thread>

namespace nex::runtime {

namespace {

const InvocationResult kStopped{false, kFunctionStopped};

}  // namespace

void InvocationQueue::push(Invocation invocation) {
  {
    std::lock_guard lock(mu_);
    if (!closed_) {
      queue_.push_back(std::move(invocation));
      cv_.notify_one();
      return;
    }
  }
  invocation.done(kStopped);
}

InvocationSource::Next InvocationQueue::next(std::chrono::milliseconds wait, Invocation& out) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, wait, [this] { return closed_ || !queue_.empty(); }))
    return Next::kTimeout;
  if (queue_.empty()) return Next::kClosed;
  out = std::move(queue_.front());
  queue_.pop_front();
  return Next::kInvocation;
}

size_t InvocationQueue::backlog() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void InvocationQueue::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

int Function::engines() const { return pool_->engines(); }

int default_concurrency() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
}

Function::Function(std::unique_ptr<WorkerPool> pool) : pool_(std::move(pool)) {}
Function::~Function() = default;

Result<std::unique_ptr<Function>> Function::create(const FunctionSpec& spec,
                                                   const FunctionLimits& limits,
                                                   FunctionLogger logger,
                                                   std::unique_ptr<InvocationSource> source) {
  auto engines = make_engine_factory(spec, limits, std::move(logger));
  if (!engines) return fail(engines.error());
  auto pool = std::make_unique<WorkerPool>(std::move(*engines), limits, std::move(source));
  NEX_RETURN_IF_ERROR(pool->start());
  return std::unique_ptr<Function>(new Function(std::move(pool)));
}

void Function::invoke(std::string subject, std::string payload,
                      std::function<void(InvocationResult)> done) {
  pool_->enqueue({std::move(subject), std::move(payload), std::move(done)});
}

InvocationResult Function::call(std::string subject, std::string payload) {
  std::promise<InvocationResult> p;
  auto f = p.get_future();
  invoke(std::move(subject), std::move(payload),
         [&p](InvocationResult r) { p.set_value(std::move(r)); });
  return f.get();
}

}  // namespace nex::runtime
