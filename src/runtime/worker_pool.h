// WorkerPool: a function's worker threads, each with its own Engine (engine.h), started on
// demand up to FunctionLimits::concurrency and retired when idle; where they take their
// invocations from; and the watchdog that stops user code past its deadline or over the memory
// limit. It knows nothing of any language: the engines do.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "core/error.h"
#include "runtime/engine.h"
#include "runtime/function.h"

namespace nex::runtime {

class WorkerPool {
 public:
  // Without a `source`, the pool has its own queue, fed by enqueue().
  WorkerPool(std::unique_ptr<EngineFactory> engines, const FunctionLimits& limits,
             std::unique_ptr<InvocationSource> source);
  // Stops user code in flight, closes the source, answers what is left with kFunctionStopped.
  ~WorkerPool();

  // Starts the first worker, which compiles the code; returns its verdict.
  Status start();
  void enqueue(Invocation invocation);
  int engines();

 private:
  // One worker: its thread, its engine, and what the watchdog knows about it.
  struct Worker final : UserCodeWatch {
    WorkerPool* pool = nullptr;
    std::thread thread;
    Engine* engine = nullptr;          // while it is alive; guarded by the pool's mu_
    std::atomic<int64_t> deadline{0};  // steady-clock ns; 0 when not running user code
    bool retired = false;              // counted out of live_ when it decided to go
    bool finished = false;             // its engine destroyed: join it

    // Sets why the user code stops, and asks the engine to stop it. Under the pool's mu_.
    void stop(StopReason reason);

   private:
    void enter() override;
    void leave() override;
  };

  void grow_locked();
  void spawn_worker_locked();
  void watch();
  void stop_overdue_locked(bool over_memory);
  void run_worker(Worker& w);
  std::unique_ptr<Engine> start_engine(Worker& w);
  void serve(Worker& w, Engine& engine);
  bool take(Worker& w, Engine& engine, Invocation& out);
  InvocationSource::Next wait_or_retire(Worker& w, Engine& engine, Invocation& out);

  std::unique_ptr<EngineFactory> factory_;
  FunctionLimits limits_;
  std::unique_ptr<InvocationSource> invocations_;
  InvocationQueue* own_queue_ = nullptr;  // invocations_, when the function has no source

  std::mutex mu_;
  std::condition_variable watch_cv_, started_cv_;
  std::vector<std::unique_ptr<Worker>> workers_;
  int live_ = 0;  // workers not retired
  std::thread watchdog_;
  std::optional<Status> compiled_;
  int idle_ = 0;                 // workers waiting for an invocation
  std::atomic<int> running_{0};  // invocations in user code
  std::atomic<bool> watch_sleeping_{false};
  bool stopping_ = false;
};

}  // namespace nex::runtime
