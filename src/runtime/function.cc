#include "runtime/function.h"
#include "runtime/encoding_globals.h"
#include "runtime/host_services.h"
#include "runtime/js_values.h"
#include "runtime/wasi.h"
#include "runtime/wasm_binary.h"
#include "runtime/wasm_errors.h"

#include <js/CompilationAndEvaluation.h>
#include <js/ContextOptions.h>
#include <js/Conversions.h>
#include <js/ErrorReport.h>
#include <js/Exception.h>
#include <js/GCAPI.h>
#include <js/Initialization.h>
#include <js/Interrupt.h>
#include <js/JSON.h>
#include <js/Promise.h>
#include <js/SourceText.h>
#include <js/Stack.h>
#include <js/experimental/JSStencil.h>
#include <js/experimental/TypedData.h>
#include <jsapi.h>
#include <jsfriendapi.h>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace nex::runtime {

namespace {

using Clock = std::chrono::steady_clock;

void init_engine_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (!JS_Init()) {
      std::fprintf(stderr, "nex: SpiderMonkey failed to initialize\n");
      std::abort();
    }
    // The engine's own static destructors fail unless it was shut down first.
    std::atexit([] { JS_ShutDown(); });
  });
}

// Resident memory of this process (the agent: engine plus the function's data).
size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

// The engine's standard classes, and nex's encoding globals, are made in a global when a script
// first names them.
bool resolve_global(JSContext* cx, JS::HandleObject global, JS::HandleId id, bool* resolved) {
  if (!JS_ResolveStandardClass(cx, global, id, resolved)) return false;
  return *resolved || encoding::resolve(cx, global, id, resolved);
}

bool may_resolve_global(const JSAtomState& names, jsid id, JSObject* global) {
  return JS_MayResolveStandardClass(names, id, global) || encoding::may_resolve(id);
}

const JSClassOps kGlobalClassOps = {
    .newEnumerate = JS_NewEnumerateStandardClasses,
    .resolve = resolve_global,
    .mayResolve = may_resolve_global,
    .trace = JS_GlobalObjectTraceHook,
};
const JSClass kGlobalClass = {"global", JSCLASS_GLOBAL_FLAGS, &kGlobalClassOps};

// "file:line: Error: message" for a pending exception, and clears it.
std::string take_exception(JSContext* cx) {
  JS::ExceptionStack stack(cx);
  if (!JS::StealPendingExceptionStack(cx, &stack)) return "unknown error";
  JS::ErrorReportBuilder report(cx);
  if (!report.init(cx, stack, JS::ErrorReportBuilder::WithSideEffects)) {
    JS_ClearPendingException(cx);
    return jsv::value_to_string(cx, stack.exception());
  }
  std::string out;
  if (const JSErrorReport* r = report.report(); r && r->filename)
    out = std::string(r->filename) + ":" + std::to_string(r->lineno) + ": ";
  return out + (report.toStringResult() ? report.toStringResult().c_str() : "error");
}

const InvocationResult kStopped{false, kFunctionStopped};

}  // namespace

class Function::Impl {
 public:
  // Why a worker's user code is being stopped.
  static constexpr int kRunOn = 0, kTimedOut = 1, kOutOfMemory = 2, kShuttingDown = 3;

  // One worker: its thread, and what the watchdog knows about it.
  struct WorkerState {
    Impl* function = nullptr;
    std::thread thread;
    JSContext* cx = nullptr;
    std::atomic<int64_t> deadline{0};  // steady-clock ns; 0 when not running user code
    std::atomic<int> stop_reason{kRunOn};
    bool retired = false;   // counted out of live_ when it decided to go
    bool finished = false;  // its engine destroyed: join it
  };

  Impl(const FunctionSpec& spec, FunctionLimits limits, FunctionLogger logger,
       std::unique_ptr<InvocationSource> source)
      : language_(spec.language),
        name_(spec.name),
        source_(spec.code),
        host_services_(spec.host_services),
        limits_(limits),
        logger_(std::move(logger)),
        invocations_(std::move(source)) {
    if (!invocations_) {
      auto queue = std::make_unique<InvocationQueue>();
      own_queue_ = queue.get();
      invocations_ = std::move(queue);
    }
    for (const auto& [k, v] : spec.environment) environ_.push_back(k + "=" + v);
    if (language_ == Language::kWasm) {
      exports_ = wasm_binary::exported_functions(source_);
      recycled_ = wasm_binary::import_own_memory(source_, kRecycledMemoryModule, "memory");
      if (recycled_ && uint64_t{recycled_->initial_pages} * kWasmPage > kRecycleMemoryUpTo)
        recycled_.reset();
    }
  }

  ~Impl() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (auto& s : states_) {  // invocations in flight end now
        if (s->deadline.load() != 0 && s->cx) {
          s->stop_reason = kShuttingDown;
          JS_RequestInterruptCallback(s->cx);
        }
      }
    }
    invocations_->close();  // workers answer what is left, then end
    watch_cv_.notify_all();
    for (auto& s : states_) s->thread.join();
    if (watchdog_.joinable()) watchdog_.join();
    Invocation left;  // when no worker was left to answer it
    while (invocations_->next(std::chrono::milliseconds(0), left) ==
           InvocationSource::Next::kInvocation)
      left.done(kStopped);
  }

  // Starts the first worker, which compiles the source; returns its verdict.
  Status start() {
    watchdog_ = std::thread([this] { watch(); });
    std::unique_lock lock(mu_);
    spawn_worker_locked();
    started_cv_.wait(lock, [this] { return compiled_.has_value(); });
    return *compiled_;
  }

  void enqueue(Invocation invocation) {
    if (!own_queue_) {
      invocation.done({false, "this function takes its invocations from its trigger subscription"});
      return;
    }
    own_queue_->push(std::move(invocation));
    std::lock_guard lock(mu_);
    grow_locked();
  }

  int engines() {
    std::lock_guard lock(mu_);
    return live_;
  }

 private:
  // Grows the pool on demand, up to the limit, when more invocations wait than there are idle
  // workers to take them (an idle function keeps one engine). Checked when an invocation
  // arrives or is taken, and by the watchdog while code runs (arrivals at a source are not seen).
  void grow_locked() {
    if (!stopping_ && live_ < limits_.concurrency && compiled_ && *compiled_ &&
        invocations_->backlog() > static_cast<size_t>(idle_))
      spawn_worker_locked();
  }

  void spawn_worker_locked() {
    // Retired workers' threads have ended or are about to: reap them.
    std::erase_if(states_, [](const std::unique_ptr<WorkerState>& s) {
      if (s->finished) s->thread.join();
      return s->finished;
    });
    auto state = std::make_unique<WorkerState>();
    WorkerState* s = state.get();
    s->function = this;
    s->thread = std::thread([this, s] { worker(*s); });
    states_.push_back(std::move(state));
    ++live_;
  }

  static bool on_interrupt(JSContext* cx) {
    auto* s = static_cast<WorkerState*>(JS_GetContextPrivate(cx));
    return s->stop_reason.load() == kRunOn;  // false ends the script, uncatchably
  }

  // Deadlines and the memory limit, checked every few milliseconds while code runs. The
  // watchdog sleeps for good only after a second without work, so a busy function does not pay
  // a thread wake-up per invocation.
  void watch() {
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
      const int64_t now = Clock::now().time_since_epoch().count();
      const bool over_memory = resident_bytes() > limits_.memory_bytes;
      for (auto& s : states_) {
        const int64_t deadline = s->deadline.load();
        if (deadline == 0 || s->stop_reason.load() != kRunOn) continue;
        const int reason = now >= deadline ? kTimedOut : over_memory ? kOutOfMemory : kRunOn;
        if (reason != kRunOn) {
          s->stop_reason = reason;
          JS_RequestInterruptCallback(s->cx);
        }
      }
    }
  }

  // Runs `body` (user code) under the deadline and memory watch.
  template <typename F>
  bool guarded(WorkerState& s, F&& body) {
    s.stop_reason = kRunOn;
    s.deadline = (Clock::now() + limits_.timeout).time_since_epoch().count();
    if (running_.fetch_add(1) == 0 && watch_sleeping_.load()) {
      std::lock_guard lock(mu_);
      watch_cv_.notify_all();
    }
    const bool ok = body();
    s.deadline = 0;
    running_.fetch_sub(1);
    return ok;
  }

  std::string failure(JSContext* cx, WorkerState& s) {
    if (JS_IsExceptionPending(cx))
      return language_ == Language::kWasm ? describe_wasm_exception(cx, name_, exports_)
                                          : take_exception(cx);
    if (s.stop_reason == kTimedOut)
      return "timed out after " + std::to_string(limits_.timeout.count()) + " ms";
    if (s.stop_reason == kOutOfMemory)
      return "memory limit exceeded (" + std::to_string(limits_.memory_bytes >> 20) + " MiB)";
    return kStopped.body;
  }

  // console.log and friends, and the log level each writes at ("log" is "info").
  static constexpr const char* kConsoleMethods[][2] = {
      {"log", "info"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}, {"debug", "debug"}};

  // A console method; its reserved slot 0 is its index in kConsoleMethods.
  static bool console(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    const int method = js::GetFunctionNativeReserved(&args.callee(), 0).toInt32();
    Impl* self = static_cast<WorkerState*>(JS_GetContextPrivate(cx))->function;
    std::string line;
    for (unsigned i = 0; i < args.length(); ++i) {
      if (i) line += ' ';
      JS::RootedValue v(cx, args[i]);
      if (v.isObject() && !JS::IsCallable(&v.toObject())) {
        // Objects as JSON, as Node prints them (roughly).
        std::string json;
        if (jsv::stringify(cx, v, json)) {
          line += json;
          continue;
        }
        JS_ClearPendingException(cx);
      }
      line += jsv::value_to_string(cx, v);
    }
    if (self->logger_) self->logger_(kConsoleMethods[method][1], line);
    args.rval().setUndefined();
    return true;
  }

  // The getter of global.console: builds the object on first use (most invocations never log,
  // and every one has a fresh global), then replaces itself with it.
  static bool console_getter(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    JS::RootedObject global(cx, JS::CurrentGlobalOrNull(cx));
    JS::RootedObject console_obj(cx, JS_NewPlainObject(cx));
    if (!global || !console_obj) return false;
    for (size_t i = 0; i < std::size(kConsoleMethods); ++i) {
      JSFunction* f =
          js::DefineFunctionWithReserved(cx, console_obj, kConsoleMethods[i][0], console, 0, 0);
      if (!f) return false;
      js::SetFunctionNativeReserved(JS_GetFunctionObject(f), 0,
                                    JS::Int32Value(static_cast<int>(i)));
    }
    JS::RootedValue v(cx, JS::ObjectValue(*console_obj));
    if (!JS_DefineProperty(cx, global, "console", v, JSPROP_READONLY)) return false;
    args.rval().set(v);
    return true;
  }

  // A worker's engine-bound state.
  struct Engine {
    // The worker's own global: compile errors are reported in it, JavaScript globals share its
    // GC zone, and WebAssembly runs in it.
    JS::PersistentRootedObject home;
    // JavaScript: the compiled script and the next invocation's fresh global and function.
    RefPtr<JS::Stencil> stencil;
    JS::PersistentRootedObject global;
    JS::PersistentRootedValue fn;
    // WebAssembly: the compiled module, the import object and an instantiating helper; when
    // the module's memory is recycled, a helper that makes a new one and the one in use.
    JS::PersistentRootedValue module, imports, instantiate, new_memory;
    JS::PersistentRootedObject memory;
    std::string error;  // why the next invocation cannot run, if it cannot
    int invocations = 0;
    explicit Engine(JSContext* cx)
        : home(cx),
          global(cx),
          fn(cx),
          module(cx),
          imports(cx),
          instantiate(cx),
          new_memory(cx),
          memory(cx) {}
  };

  // A fresh global with `console`, and the function the script evaluates to. The global is a
  // realm of its own, in a compartment of its own, sharing the worker's GC zone (a zone per
  // global made each one cost several times more to create and to collect).
  bool prepare(JSContext* cx, WorkerState& s, Engine& e) {
    JS::PersistentRootedObject& global = e.global;
    JS::RealmOptions options;
    options.creationOptions().setNewCompartmentInExistingZone(e.home);
    global = JS_NewGlobalObject(cx, &kGlobalClass, nullptr, JS::FireOnNewGlobalHook, options);
    if (!global) {
      e.error = failure(cx, s);
      return false;
    }
    JSAutoRealm realm(cx, global);
    if (!JS_DefineProperty(cx, global, "console", console_getter, nullptr, 0) ||
        !host::define_js(cx, global))
      return false;
    // The payload's classes (Uint8Array, ArrayBuffer) are set up in a realm when first used:
    // here, while idle, rather than in the invocation.
    if (!JS_NewUint8Array(cx, 0)) return false;
    if (limits_.reuse_global && !freeze_intrinsics(cx)) {
      e.error = failure(cx, s);
      return false;
    }
    JS::CompileOptions options_c(cx);
    options_c.setFileAndLine(name_.c_str(), 1);
    // Nothing debugs these scripts; telling the engine so saves it 14 us per fresh global
    // (fresh_global_bench), which it otherwise spends announcing each new script to debuggers.
    options_c.setHideScriptFromDebugger(true);
    JS::InstantiateOptions instantiate(options_c);
    JS::RootedScript script(cx, JS::InstantiateGlobalStencil(cx, instantiate, e.stencil));
    JS::RootedValue result(cx);
    const bool ok = script && guarded(s, [&] { return JS_ExecuteScript(cx, script, &result); });
    if (!ok) {
      e.error = failure(cx, s);
      return false;
    }
    if (!result.isObject() || !JS::IsCallable(&result.toObject())) {
      e.error = name_ + " must evaluate to a function, like (subject, payload) => payload";
      return false;
    }
    e.fn = result;
    return true;
  }

  // A global that serves many invocations gets its built-ins frozen first: one invocation cannot
  // change what Array.prototype or JSON.parse mean to the next (assigning to them then throws
  // in strict code and does nothing otherwise). The global itself, and what the script makes,
  // stay writable.
  static bool freeze_intrinsics(JSContext* cx) {
    static constexpr const char kFreeze[] = R"JS((() => {
  const seen = new WeakSet();
  const freeze = (o) => {
    if (o === null || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) return;
    seen.add(o);
    Object.freeze(o);
    for (const key of Reflect.ownKeys(o)) {
      const d = Reflect.getOwnPropertyDescriptor(o, key);
      if ('value' in d) freeze(d.value); else { freeze(d.get); freeze(d.set); }
    }
    freeze(Reflect.getPrototypeOf(o));
  };
  const names = ['Object', 'Function', 'Array', 'Number', 'Boolean', 'String', 'Symbol',
    'BigInt', 'Date', 'RegExp', 'Error', 'EvalError', 'RangeError', 'ReferenceError',
    'SyntaxError', 'TypeError', 'URIError', 'AggregateError', 'Promise', 'Map', 'Set',
    'WeakMap', 'WeakSet', 'WeakRef', 'FinalizationRegistry', 'Proxy', 'Reflect', 'JSON', 'Math',
    'ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Int8Array', 'Uint8Array',
    'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array', 'Uint32Array',
    'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array', 'Atomics', 'Intl',
    'WebAssembly', 'escape', 'unescape', 'isNaN', 'isFinite', 'parseInt', 'parseFloat',
    'decodeURI', 'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'TextEncoder',
    'TextDecoder', 'atob', 'btoa'];
  for (const name of names) {
    const d = Reflect.getOwnPropertyDescriptor(globalThis, name);
    if (d && 'value' in d) {
      freeze(d.value);
      Object.defineProperty(globalThis, name, { writable: false, configurable: false });
    }
  }
  // Intrinsics reachable only through syntax: iterators, generators, async functions.
  for (const o of [[][Symbol.iterator](), new Map()[Symbol.iterator](),
      new Set()[Symbol.iterator](), ''[Symbol.iterator](), /./[Symbol.matchAll](''),
      function* () {}, async function () {}, async function* () {}, (function* () {})(),
      (async function* () {})()]) freeze(o);
})())JS";
    JS::CompileOptions options(cx);
    options.setFileAndLine("nex:freeze-intrinsics", 1);
    JS::SourceText<mozilla::Utf8Unit> source;
    if (!source.init(cx, kFreeze, sizeof kFreeze - 1, JS::SourceOwnership::Borrowed)) return false;
    JS::RootedValue ignored(cx);
    return JS::Evaluate(cx, options, source, &ignored);
  }

  // Calls the prepared function in its global.
  InvocationResult run_js(JSContext* cx, WorkerState& s, Engine& e, const Invocation& job) {
    JS::HandleObject global = e.global;
    JS::HandleValue fn = e.fn;
    JSAutoRealm realm(cx, global);
    JS::RootedObject payload(cx, jsv::new_uint8array(cx, job.payload));
    if (!payload) return {false, failure(cx, s)};
    JS::RootedValueArray<2> args(cx);
    JS::RootedString subject(cx, jsv::new_string(cx, job.subject));
    if (!subject) return {false, failure(cx, s)};
    args[0].setString(subject);
    args[1].setObject(*payload);
    JS::RootedValue rv(cx);
    std::string error;
    const bool ok = guarded(s, [&] {
      if (!JS_CallFunctionValue(cx, global, fn, args, &rv)) return false;
      if (rv.isObject()) {
        JS::RootedObject promise(cx, &rv.toObject());
        if (JS::IsPromiseObject(promise)) {
          js::RunJobs(cx);
          switch (JS::GetPromiseState(promise)) {
            case JS::PromiseState::Fulfilled:
              rv.set(JS::GetPromiseResult(promise));
              break;
            case JS::PromiseState::Rejected: {
              JS::RootedValue reason(cx, JS::GetPromiseResult(promise));
              JS_SetPendingException(cx, reason);
              return false;
            }
            case JS::PromiseState::Pending:
              error = "the function's promise never settled";
              return false;
          }
        }
      }
      return true;
    });
    if (!ok) return {false, error.empty() ? failure(cx, s) : error};
    InvocationResult result{true, {}};
    if (!jsv::to_bytes(cx, rv, result.body)) return {false, failure(cx, s)};
    return result;
  }

  void worker(WorkerState& s) {
    host::bind_thread(&host_services_);
    JSContext* cx = JS_NewContext(limits_.memory_bytes);
    bool ready = cx != nullptr;
    if (ready) {
      s.cx = cx;
      JS_SetContextPrivate(cx, &s);
      JS_SetNativeStackQuota(cx, 1 << 20);  // well inside the thread's 8 MiB stack
      JS_SetGCParameter(cx, JSGC_MAX_BYTES, static_cast<uint32_t>(limits_.memory_bytes));
      // The job queue must exist before the self-hosted code is initialized.
      ready = js::UseInternalJobQueues(cx) && JS::InitSelfHostedCode(cx) &&
              JS_AddInterruptCallback(cx, on_interrupt);
    }
    if (ready) {
      serve(cx, s);
    } else {
      std::lock_guard lock(mu_);
      if (!compiled_) compiled_ = fail(ErrorCode::kInternal, "cannot start the JavaScript engine");
      started_cv_.notify_all();
    }
    if (cx) {
      {
        std::lock_guard lock(mu_);
        s.cx = nullptr;
      }
      encoding::release_thread();
      JS_DestroyContext(cx);
    }
    ::malloc_trim(0);
    std::lock_guard lock(mu_);
    if (!s.retired) --live_;  // it stopped, or its engine could not start
    s.finished = true;
  }

  // Compiles in this worker's engine (compiled code is not shared between engines) and serves
  // jobs until the function is destroyed. The first worker's verdict is the deploy's.
  bool serve(JSContext* cx, WorkerState& s) {
    Engine e(cx);
    e.home =
        JS_NewGlobalObject(cx, &kGlobalClass, nullptr, JS::FireOnNewGlobalHook, JS::RealmOptions());
    bool ready = e.home != nullptr;
    if (ready) ready = language_ == Language::kJavaScript ? setup_js(cx, s, e) : setup_wasm(cx, e);
    {
      std::lock_guard lock(mu_);
      if (!compiled_) {
        compiled_ = ready ? Status{} : fail(ErrorCode::kInvalidArgument, e.error);
        started_cv_.notify_all();
      }
    }
    return ready && loop(cx, s, e);
  }

  bool setup_js(JSContext* cx, WorkerState& s, Engine& e) {
    JS::CompileOptions options(cx);
    options.setFileAndLine(name_.c_str(), 1);
    // Every function compiled now: each invocation's fresh global instantiates the script
    // again, and lazily compiled functions would be parsed again, in every invocation.
    options.setForceFullParse();
    JS::SourceText<mozilla::Utf8Unit> text;
    {
      JSAutoRealm realm(cx, e.home);  // compile errors are exception objects, in a realm
      if (text.init(cx, source_.data(), source_.size(), JS::SourceOwnership::Borrowed))
        e.stencil = JS::CompileGlobalScriptToStencil(cx, options, text);
      if (!e.stencil) {
        e.error = JS_IsExceptionPending(cx) ? take_exception(cx) : "cannot compile";
        return false;
      }
    }
    return prepare(cx, s, e);
  }

  // Compiles the module and checks it is a WASI command that needs nothing nex lacks. The
  // helper's `memory`, when given, is the limits of the memory the module imports from
  // `memoryModule` (see recycled_).
  bool setup_wasm(JSContext* cx, Engine& e) {
    static constexpr const char* kHelper = R"((function (bytes, imports, memoryModule, memory) {
  // The memory is made (and remade, once it grew) by newMemory, before an instance needs it.
  if (memory) imports[memoryModule] = {memory: null};
  const newMemory =
      memory && (() => (imports[memoryModule].memory = new WebAssembly.Memory(memory)));
  const m = new WebAssembly.Module(bytes);
  const exports = WebAssembly.Module.exports(m);
  if (!exports.some(x => x.name === '_start' && x.kind === 'function'))
    throw new Error('the module exports no _start function: build it as a WASI command ' +
                    '(clang --target=wasm32-wasi, or cargo build --target wasm32-wasi)');
  if (!exports.some(x => x.name === 'memory' && x.kind === 'memory'))
    throw new Error('the module exports no memory');
  for (const i of WebAssembly.Module.imports(m))
    if (!Object.hasOwn(imports, i.module) || !Object.hasOwn(imports[i.module], i.name))
      throw new Error('the module imports ' + i.module + '.' + i.name +
                      ', which nex does not provide');
  return [m, imports, (m, imports) => new WebAssembly.Instance(m, imports).exports, newMemory];
}))";
    JSAutoRealm realm(cx, e.home);
    JS::CompileOptions options(cx);
    options.setFileAndLine("nex:wasm-setup", 1);
    JS::SourceText<mozilla::Utf8Unit> text;
    JS::RootedValue helper(cx);
    if (!text.init(cx, kHelper, std::strlen(kHelper), JS::SourceOwnership::Borrowed) ||
        !JS::Evaluate(cx, options, text, &helper)) {
      e.error = take_exception(cx);
      return false;
    }
    // The module with its memory recycled if it can be; if that does not compile, the
    // original, so that errors name the user's own bytes.
    JS::RootedValue parts(cx);
    bool compiled = recycled_ && compile_wasm(cx, helper, recycled_->module, true, &parts);
    if (!compiled) {
      JS_ClearPendingException(cx);
      compiled = compile_wasm(cx, helper, source_, false, &parts);
      if (!compiled) {
        e.error = describe_wasm_exception(cx, name_, exports_);
        return false;
      }
    }
    JS::RootedObject array(cx, &parts.toObject());
    JS::RootedValue v(cx);
    if (!JS_GetElement(cx, array, 0, &v)) return false;
    e.module = v;
    if (!JS_GetElement(cx, array, 1, &v)) return false;
    e.imports = v;
    if (!JS_GetElement(cx, array, 2, &v)) return false;
    e.instantiate = v;
    if (!JS_GetElement(cx, array, 3, &v)) return false;
    e.new_memory = v;  // undefined: each instance makes its own memory
    return true;
  }

  // Calls the setup helper on `code` with fresh imports: [module, imports, instantiate,
  // new memory or undefined].
  bool compile_wasm(JSContext* cx, JS::HandleValue helper, std::string_view code, bool recycle,
                    JS::MutableHandleValue parts) {
    JS::RootedObject bytes(cx, JS_NewUint8Array(cx, code.size()));
    JS::RootedObject wasi_imports(cx, wasi::make_imports(cx));
    JS::RootedObject nex_imports(cx, host::make_wasm_imports(cx));
    JS::RootedObject imports(cx, JS_NewPlainObject(cx));
    if (!bytes || !wasi_imports || !nex_imports || !imports ||
        !JS_DefineProperty(cx, imports, wasi::kModule, wasi_imports, JSPROP_ENUMERATE) ||
        !JS_DefineProperty(cx, imports, host::kWasmModule, nex_imports, JSPROP_ENUMERATE))
      return false;
    {
      bool shared = false;
      JS::AutoCheckCannotGC nogc;
      std::memcpy(JS_GetUint8ArrayData(bytes, &shared, nogc), code.data(), code.size());
    }
    JS::RootedValueArray<4> args(cx);
    args[0].setObject(*bytes);
    args[1].setObject(*imports);
    if (recycle) {
      JS::RootedObject limits(cx, JS_NewPlainObject(cx));
      JS::RootedString module(cx, JS_NewStringCopyZ(cx, kRecycledMemoryModule));
      if (!limits || !module ||
          !JS_DefineProperty(cx, limits, "initial", recycled_->initial_pages, JSPROP_ENUMERATE) ||
          (recycled_->maximum_pages &&
           !JS_DefineProperty(cx, limits, "maximum", *recycled_->maximum_pages, JSPROP_ENUMERATE)))
        return false;
      args[2].setString(module);
      args[3].setObject(*limits);
    }
    return JS_CallFunctionValue(cx, nullptr, helper, args, parts);
  }

  // The recycled memory for the next instance: zeroed, as a new memory would be; false on an
  // engine error.
  bool reset_memory(JSContext* cx, Engine& e) {
    if (e.memory) {
      const wasi::MemoryBytes bytes = wasi::memory_bytes(cx, e.memory);
      if (!bytes.data) return false;
      if (bytes.length == size_t{recycled_->initial_pages} * kWasmPage) {
        std::memset(bytes.data, 0, bytes.length);
        return true;
      }
      // It grew, and a memory cannot shrink: a new one.
    }
    JS::RootedValue memory(cx);
    if (!JS_CallFunctionValue(cx, nullptr, e.new_memory, JS::HandleValueArray::empty(), &memory) ||
        !memory.isObject())
      return false;
    e.memory = &memory.toObject();
    return true;
  }

  // A fresh instance runs _start with argv = [name, subject], stdin = payload; its stdout is
  // the reply. proc_exit(0) is success; another code, a trap or a limit is an error.
  InvocationResult run_wasm(JSContext* cx, WorkerState& s, Engine& e, const Invocation& job) {
    JSAutoRealm realm(cx, e.home);
    wasi::Invocation inv;
    inv.args = {name_, job.subject};
    inv.environ = environ_;
    inv.stdin_data = job.payload;
    inv.stop = &s.stop_reason;
    inv.stderr_line = [this](std::string_view line) {
      if (logger_) logger_("error", line);
    };
    JS::RootedObject memory(cx);
    inv.memory = &memory;
    wasi::ActiveInvocation active(inv);
    if (!e.new_memory.isUndefined() && !reset_memory(cx, e)) return {false, failure(cx, s)};
    const bool ok = guarded(s, [&] {
      JS::RootedValueArray<2> args(cx);
      args[0].set(e.module);
      args[1].set(e.imports);
      JS::RootedValue exports(cx);
      if (!JS_CallFunctionValue(cx, nullptr, e.instantiate, args, &exports)) return false;
      JS::RootedObject ex(cx, &exports.toObject());
      JS::RootedValue mem(cx);
      if (!JS_GetProperty(cx, ex, "memory", &mem) || !mem.isObject()) return false;
      memory = &mem.toObject();
      JS::RootedValue rv(cx);
      return JS_CallFunctionName(cx, ex, "_start", JS::HandleValueArray::empty(), &rv);
    });
    wasi::finish(inv);
    if (!ok && inv.exit_code && s.stop_reason == kRunOn) {
      JS_ClearPendingException(cx);
      if (*inv.exit_code != 0) return {false, "exited with code " + std::to_string(*inv.exit_code)};
    } else if (!ok) {
      return {false, failure(cx, s)};
    }
    return {true, std::move(inv.stdout_data)};
  }

  bool loop(JSContext* cx, WorkerState& s, Engine& e) {
    const bool js = language_ == Language::kJavaScript;
    for (;;) {
      // Prepared while idle, so an invocation does not wait for its fresh global.
      if (js && !e.global && !prepare(cx, s, e)) e.global = nullptr;
      Invocation job;
      if (!take(cx, s, job)) return true;
      InvocationResult result;
      if (!js) {
        result = run_wasm(cx, s, e, job);
      } else if (e.global) {
        result = run_js(cx, s, e, job);
      } else {
        result = {false, e.error};
      }
      const bool stopped = s.stop_reason != kRunOn;
      // The global served its one invocation; the next one gets a fresh one. A reused global
      // is given up only when an invocation was stopped midway (time-out, memory).
      if (!limits_.reuse_global || stopped) {
        e.global = nullptr;
        e.fn = JS::UndefinedValue();
      }
      job.done(std::move(result));
      // Give back what a runaway invocation took; and collect spent instances and their
      // memories regularly, before they pile up.
      const int collect_every = js ? kCollectGlobalsEvery : kCollectInstancesEvery;
      if (stopped || ++e.invocations % collect_every == 0) JS_GC(cx);
      if (stopped) ::malloc_trim(0);  // and hand the pages back, so the limit is not left tripped
    }
  }

  // The worker's next invocation; false when the function stops (after the worker answered
  // what was still waiting), or when the worker retires. While idle, the engine gives its spare
  // memory back once; idle for longer, and not the last engine, it retires.
  bool take(JSContext* cx, WorkerState& s, Invocation& out) {
    using Next = InvocationSource::Next;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        ++idle_;
      }
      Next next = invocations_->next(kIdleBeforeShrink, out);
      if (next == Next::kTimeout) {
        JS::PrepareForFullGC(cx);
        JS::NonIncrementalGC(cx, JS::GCOptions::Shrink, JS::GCReason::API);
        ::malloc_trim(0);
      }
      while (next == Next::kTimeout) {
        next = invocations_->next(limits_.idle_engine_lifetime, out);
        std::lock_guard lock(mu_);
        if (next == Next::kTimeout && live_ > 1) {
          --idle_;
          --live_;
          s.retired = true;
          return false;
        }
      }
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

  // Measured with function_runtime_bench: spent JavaScript globals (a realm each) are collected
  // best while their memory is still in the cache; WebAssembly instances are small, and a
  // collection's fixed cost matters more (at 128 they cost 1 us more each than at 256).
  static constexpr int kCollectGlobalsEvery = 128;
  static constexpr int kCollectInstancesEvery = 256;
  // WebAssembly memories up to this size are recycled: each invocation still gets a fresh
  // instance, with the memory zeroed instead of mapped anew (mapping and unmapping, with the
  // page faults and TLB shootdowns that come with it, cost more than a 2-page instance).
  // Zeroing grows with the size: measured, it was about even with a new mapping at 17 pages
  // (Rust's default memory) and worse at 30. Larger memories are left to the engine, which
  // maps only the pages used.
  static constexpr uint64_t kWasmPage = 64 * 1024;
  static constexpr uint64_t kRecycleMemoryUpTo = 20 * kWasmPage;
  static constexpr const char* kRecycledMemoryModule = "nex:memory";
  static constexpr auto kIdleBeforeShrink = std::chrono::seconds(1);

  Language language_;
  std::string name_;
  std::string source_;  // JavaScript source or WebAssembly module bytes
  HostServices host_services_;
  std::vector<std::string> environ_;                     // "KEY=VALUE", for WebAssembly
  std::optional<wasm_binary::ImportedMemory> recycled_;  // WebAssembly, when its memory is recycled
  std::map<uint32_t, std::string> exports_;              // WebAssembly: function names, for errors
  FunctionLimits limits_;
  FunctionLogger logger_;
  std::unique_ptr<InvocationSource> invocations_;
  InvocationQueue* own_queue_ = nullptr;  // invocations_, when the function has no source

  std::mutex mu_;
  std::condition_variable watch_cv_, started_cv_;
  std::vector<std::unique_ptr<WorkerState>> states_;
  int live_ = 0;  // workers not retired
  std::thread watchdog_;
  std::optional<Status> compiled_;
  int idle_ = 0;                 // workers waiting for an invocation
  std::atomic<int> running_{0};  // invocations in user code
  std::atomic<bool> watch_sleeping_{false};
  bool stopping_ = false;
};

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

int Function::engines() const { return impl_->engines(); }

int default_concurrency() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
}

Function::Function(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Function::~Function() = default;

Result<std::unique_ptr<Function>> Function::create(const FunctionSpec& spec,
                                                   const FunctionLimits& limits,
                                                   FunctionLogger logger,
                                                   std::unique_ptr<InvocationSource> source) {
  init_engine_once();
  auto impl = std::make_unique<Impl>(spec, limits, std::move(logger), std::move(source));
  NEX_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<Function>(new Function(std::move(impl)));
}

void Function::invoke(std::string subject, std::string payload,
                      std::function<void(InvocationResult)> done) {
  impl_->enqueue({std::move(subject), std::move(payload), std::move(done)});
}

InvocationResult Function::call(std::string subject, std::string payload) {
  std::promise<InvocationResult> p;
  auto f = p.get_future();
  invoke(std::move(subject), std::move(payload),
         [&p](InvocationResult r) { p.set_value(std::move(r)); });
  return f.get();
}

}  // namespace nex::runtime
