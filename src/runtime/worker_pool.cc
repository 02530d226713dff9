#include "runtime/worker_pool.h"

#include <malloc.h>
#include <unistd.h>

#include <fstream>

namespace nex::runtime {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kIdleBeforeShrink = std::chrono::seconds(1);

// Resident memory of this process (the agent: engines plus the function's data).
size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

const InvocationResult kStopped{false, kFunctionStopped};

}  // namespace

void WorkerPool::Worker::stop(StopReason reason) {
  stop_ = reason;
  engine->interrupt();
}

// Puts user code under the deadline and memory watch.
void WorkerPool::Worker::enter() {
  stop_ = StopReason::kRunOn;
  deadline = (Clock::now() + pool->limits_.timeout).time_since_epoch().count();
  if (pool->running_.fetch_add(1) == 0 && pool->watch_sleeping_.load()) {
    std::lock_guard lock(pool->mu_);
    pool->watch_cv_.notify_all();
  }
}

void WorkerPool::Worker::leave() {
  deadline = 0;
  pool->running_.fetch_sub(1);
}

WorkerPool::WorkerPool(std::unique_ptr<EngineFactory> engines, const FunctionLimits& limits,
                       std::unique_ptr<InvocationSource> source)
    : factory_(std::move(engines)), limits_(limits), invocations_(std::move(source)) {
  if (!invocations_) {
    auto queue = std::make_unique<InvocationQueue>();
    own_queue_ = queue.get();
    invocations_ = std::move(queue);
  }
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto& w : workers_)  // invocations in flight end now
      if (w->deadline.load() != 0 && w->engine) w->stop(StopReason::kShuttingDown);
  }
  invocations_->close();  // workers answer what is left, then end
  watch_cv_.notify_all();
  for (auto& w : workers_) w->thread.join();
  if (watchdog_.joinable()) watchdog_.join();
  Invocation left;  // when no worker was left to answer it
  while (invocations_->next(std::chrono::milliseconds(0), left) ==
         InvocationSource::Next::kInvocation)
    left.done(kStopped);
}

Status WorkerPool::start() {
  watchdog_ = std::thread([this] { watch(); });
  std::unique_lock lock(mu_);
  spawn_worker_locked();
  started_cv_.wait(lock, [this] { return compiled_.has_value(); });
  return *compiled_;
}

void WorkerPool::enqueue(Invocation invocation) {
  if (!own_queue_) {
    invocation.done({false, "this function takes its invocations from its trigger subscription"});
    return;
  }
  own_queue_->push(std::move(invocation));
  std::lock_guard lock(mu_);
  grow_locked();
}

int WorkerPool::engines() {
  std::lock_guard lock(mu_);
  return live_;
}

// Grows the pool on demand, up to the limit, when more invocations wait than there are idle
// workers to take them (an idle function keeps one engine). Checked when an invocation
// arrives or is taken, and by the watchdog while code runs (arrivals at a source are not seen).
void WorkerPool::grow_locked() {
  if (!stopping_ && live_ < limits_.concurrency && compiled_ && *compiled_ &&
      invocations_->backlog() > static_cast<size_t>(idle_))
    spawn_worker_locked();
}

void WorkerPool::spawn_worker_locked() {
  // Retired workers' threads have ended or are about to: reap them.
  std::erase_if(workers_, [](const std::unique_ptr<Worker>& w) {
    if (w->finished) w->thread.join();
    return w->finished;
  });
  auto worker = std::make_unique<Worker>();
  Worker* w = worker.get();
  w->pool = this;
  w->thread = std::thread([this, w] { run_worker(*w); });
  workers_.push_back(std::move(worker));
  ++live_;
}

// Deadlines and the memory limit, checked every few milliseconds while code runs. The
// watchdog sleeps for good only after a second without work, so a busy function does not pay
// a thread wake-up per invocation.
void WorkerPool::watch() {
  std::unique_lock lock(mu_);
  auto last_busy = Clock::now();
  while (!stopping_) {
    if (running_.load() > 0) last_busy = Clock::now();
    if (Clock::now() - last_busy > std::chrono::seconds(1)) {
      watch_sleeping_ = true;
      watch_cv_.wait(lock, [this] { return stopping_ || running_.load() > 0; });
      watch_sleeping_ = false;
      last_busy = Clock::now();
      continue;
    }
    watch_cv_.wait_for(lock, std::chrono::milliseconds(5));
    if (running_.load() == 0) continue;
    grow_locked();  // invocations waiting behind busy (perhaps runaway) ones get an engine
    stop_overdue_locked(resident_bytes() > limits_.memory_bytes);
  }
}

void WorkerPool::stop_overdue_locked(bool over_memory) {
  const int64_t now = Clock::now().time_since_epoch().count();
  for (auto& w : workers_) {
    const int64_t deadline = w->deadline.load();
    if (deadline == 0 || w->stop_reason() != StopReason::kRunOn) continue;
    if (now >= deadline)
      w->stop(StopReason::kTimedOut);
    else if (over_memory)
      w->stop(StopReason::kOutOfMemory);
  }
}

void WorkerPool::run_worker(Worker& w) {
  if (std::unique_ptr<Engine> engine = start_engine(w)) {
    serve(w, *engine);
    {
      std::lock_guard lock(mu_);
      w.engine = nullptr;
    }
  }
  ::malloc_trim(0);
  std::lock_guard lock(mu_);
  if (!w.retired) --live_;  // it stopped, or its engine could not start
  w.finished = true;
}

// This worker's engine, compiled (compiled code is not shared between engines); null if it
// cannot serve. The first worker's verdict is the deploy's.
std::unique_ptr<Engine> WorkerPool::start_engine(Worker& w) {
  Result<std::unique_ptr<Engine>> made = factory_->new_engine(w);
  Status compiled;
  if (made) {
    {
      std::lock_guard lock(mu_);
      w.engine = made->get();  // the watchdog can stop what compiling runs (a script's top level)
    }
    compiled = (*made)->compile();
  } else {
    compiled = fail(made.error());
  }
  std::lock_guard lock(mu_);
  if (!compiled_) {
    compiled_ = compiled;
    started_cv_.notify_all();
  }
  if (compiled) return std::move(*made);
  w.engine = nullptr;
  return nullptr;  // with the lock released, the engine goes
}

// Serves invocations until the function is destroyed or the worker retires.
void WorkerPool::serve(Worker& w, Engine& engine) {
  for (;;) {
    engine.prepare();
    Invocation job;
    if (!take(w, engine, job)) return;
    InvocationResult result = engine.run(job);
    const bool stopped = w.stop_reason() != StopReason::kRunOn;
    job.done(std::move(result));
    engine.finish(stopped);
  }
}

// The worker's next invocation; false when the function stops (after the worker answered
// what was still waiting), or when the worker retires.
bool WorkerPool::take(Worker& w, Engine& engine, Invocation& out) {
  using Next = InvocationSource::Next;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      ++idle_;
    }
    const Next next = wait_or_retire(w, engine, out);
    if (next == Next::kTimeout) return false;  // retired
    std::unique_lock lock(mu_);
    --idle_;
    if (next == Next::kClosed) return false;
    if (!stopping_) {
      grow_locked();
      return true;
    }
    lock.unlock();
    out.done(kStopped);
  }
}

// Waits for an invocation. While idle, the engine gives its spare memory back once; idle for
// longer, and not the last engine, the worker retires (kTimeout, counted out of idle_ and
// live_).
InvocationSource::Next WorkerPool::wait_or_retire(Worker& w, Engine& engine, Invocation& out) {
  using Next = InvocationSource::Next;
  Next next = invocations_->next(kIdleBeforeShrink, out);
  if (next == Next::kTimeout) engine.shrink();
  while (next == Next::kTimeout) {
    next = invocations_->next(limits_.idle_engine_lifetime, out);
    std::lock_guard lock(mu_);
    if (next == Next::kTimeout && live_ > 1) {
      --idle_;
      --live_;
      w.retired = true;
      return next;
    }
  }
  return next;
}

}  // namespace nex::runtime
