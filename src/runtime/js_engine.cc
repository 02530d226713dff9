// The JavaScript engine (Nex's "v8" type), on SpiderMonkey. Each invocation instantiates the
// compiled script in a fresh global (prepared while the worker is idle; with
// FunctionLimits::reuse_global, one per engine instead) and calls the function it evaluates to
// with (subject, payload as Uint8Array). Registered in kEngines (engine.cc).
#include "runtime/host_services.h"
#include "runtime/js_values.h"
#include "runtime/spidermonkey.h"

#include <js/CompilationAndEvaluation.h>
#include <js/Conversions.h>
#include <js/Promise.h>
#include <js/SourceText.h>
#include <js/experimental/JSStencil.h>
#include <js/experimental/TypedData.h>
#include <jsapi.h>
#include <jsfriendapi.h>

namespace nex::runtime {

namespace {

using spidermonkey::take_exception;

// Measured with function_runtime_bench: spent JavaScript globals (a realm each) are collected
// best while their memory is still in the cache.
constexpr int kCollectGlobalsEvery = 128;

// A global that serves many invocations gets its built-ins frozen first: one invocation cannot
// change what Array.prototype or JSON.parse mean to the next (assigning to them then throws
// in strict code and does nothing otherwise). The global itself, and what the script makes,
// stay writable.
bool freeze_intrinsics(JSContext* cx) {
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

// What every worker's engine of one function is made from.
struct JsCode {
  std::string name;  // the file name in error messages
  std::string source;
  HostServices host_services;
  FunctionLimits limits;
  FunctionLogger logger;
};

class JsEngine final : public spidermonkey::SpiderMonkeyEngine {
 public:
  JsEngine(spidermonkey::ContextPtr cx, UserCodeWatch& watch, const JsCode& code)
      : SpiderMonkeyEngine(std::move(cx), watch, code.limits),
        code_(code),
        global_(cx_),
        fn_(cx_) {}

  Status compile() override {
    if (!make_home() || !compile_stencil() || !prepare_global())
      return fail(ErrorCode::kInvalidArgument, error_);
    return {};
  }

  // Prepared while idle, so an invocation does not wait for its fresh global.
  void prepare() override {
    if (!global_ && !prepare_global()) global_ = nullptr;
  }

  InvocationResult run(const Invocation& job) override {
    if (!global_) return {false, error_};
    return call(job);
  }

  void finish(bool stopped) override {
    // The global served its one invocation; the next one gets a fresh one. A reused global
    // is given up only when an invocation was stopped midway (time-out, memory).
    if (!limits_.reuse_global || stopped) {
      global_ = nullptr;
      fn_ = JS::UndefinedValue();
    }
    collect(stopped, kCollectGlobalsEvery);
  }

 private:
  std::string describe_exception() override { return take_exception(cx_); }

  bool compile_stencil() {
    JS::CompileOptions options(cx_);
    options.setFileAndLine(code_.name.c_str(), 1);
    // Every function compiled now: each invocation's fresh global instantiates the script
    // again, and lazily compiled functions would be parsed again, in every invocation.
    options.setForceFullParse();
    JS::SourceText<mozilla::Utf8Unit> text;
    JSAutoRealm realm(cx_, home_);  // compile errors are exception objects, in a realm
    if (text.init(cx_, code_.source.data(), code_.source.size(), JS::SourceOwnership::Borrowed))
      stencil_ = JS::CompileGlobalScriptToStencil(cx_, options, text);
    if (!stencil_) {
      error_ = JS_IsExceptionPending(cx_) ? take_exception(cx_) : "cannot compile";
      return false;
    }
    return true;
  }

  // A fresh global with `console`, and the function the script evaluates to. The global is a
  // realm of its own, in a compartment of its own, sharing the worker's GC zone (a zone per
  // global made each one cost several times more to create and to collect).
  bool prepare_global() {
    JS::RealmOptions options;
    options.creationOptions().setNewCompartmentInExistingZone(home_);
    global_ = JS_NewGlobalObject(cx_, &spidermonkey::kGlobalClass, nullptr, JS::FireOnNewGlobalHook,
                                 options);
    if (!global_) {
      error_ = failure();
      return false;
    }
    JSAutoRealm realm(cx_, global_);
    if (!JS_DefineProperty(cx_, global_, "console", console_getter, nullptr, 0) ||
        !host::define_js(cx_, global_))
      return false;
    // The payload's classes (Uint8Array, ArrayBuffer) are set up in a realm when first used:
    // here, while idle, rather than in the invocation.
    if (!JS_NewUint8Array(cx_, 0)) return false;
    if (limits_.reuse_global && !freeze_intrinsics(cx_)) {
      error_ = failure();
      return false;
    }
    return evaluate_script();
  }

  // Runs the script in the new global; it must evaluate to a function.
  bool evaluate_script() {
    JS::CompileOptions options(cx_);
    options.setFileAndLine(code_.name.c_str(), 1);
    // Nothing debugs these scripts; telling the engine so saves it 14 us per fresh global
    // (fresh_global_bench), which it otherwise spends announcing each new script to debuggers.
    options.setHideScriptFromDebugger(true);
    JS::InstantiateOptions instantiate(options);
    JS::RootedScript script(cx_, JS::InstantiateGlobalStencil(cx_, instantiate, stencil_));
    JS::RootedValue result(cx_);
    const bool ok =
        script && watch_.guarded([&] { return JS_ExecuteScript(cx_, script, &result); });
    if (!ok) {
      error_ = failure();
      return false;
    }
    if (!result.isObject() || !JS::IsCallable(&result.toObject())) {
      error_ = code_.name + " must evaluate to a function, like (subject, payload) => payload";
      return false;
    }
    fn_ = result;
    return true;
  }

  // Calls the prepared function in its global. A string or any ArrayBuffer view is the reply's
  // bytes, undefined is empty, anything else is JSON; a Promise is awaited.
  InvocationResult call(const Invocation& job) {
    JSAutoRealm realm(cx_, global_);
    JS::RootedObject payload(cx_, jsv::new_uint8array(cx_, job.payload));
    if (!payload) return {false, failure()};
    JS::RootedValueArray<2> args(cx_);
    JS::RootedString subject(cx_, jsv::new_string(cx_, job.subject));
    if (!subject) return {false, failure()};
    args[0].setString(subject);
    args[1].setObject(*payload);
    JS::RootedValue rv(cx_);
    std::string error;
    const bool ok = watch_.guarded(
        [&] { return JS_CallFunctionValue(cx_, global_, fn_, args, &rv) && settle(&rv, error); });
    if (!ok) return {false, error.empty() ? failure() : error};
    InvocationResult result{true, {}};
    if (!jsv::to_bytes(cx_, rv, result.body)) return {false, failure()};
    return result;
  }

  // When `rv` is a promise, runs the jobs it waits on and replaces it with its value; a
  // rejection is left pending as the exception.
  bool settle(JS::MutableHandleValue rv, std::string& error) {
    if (!rv.isObject()) return true;
    JS::RootedObject promise(cx_, &rv.toObject());
    if (!JS::IsPromiseObject(promise)) return true;
    js::RunJobs(cx_);
    switch (JS::GetPromiseState(promise)) {
      case JS::PromiseState::Fulfilled:
        rv.set(JS::GetPromiseResult(promise));
        return true;
      case JS::PromiseState::Rejected: {
        JS::RootedValue reason(cx_, JS::GetPromiseResult(promise));
        JS_SetPendingException(cx_, reason);
        return false;
      }
      case JS::PromiseState::Pending:
        error = "the function's promise never settled";
        return false;
    }
    return true;
  }

  // console.log and friends, and the log level each writes at ("log" is "info").
  static constexpr const char* kConsoleMethods[][2] = {
      {"log", "info"}, {"info", "info"}, {"warn", "warn"}, {"error", "error"}, {"debug", "debug"}};

  // A console method; its reserved slot 0 is its index in kConsoleMethods.
  static bool console(JSContext* cx, unsigned argc, JS::Value* vp) {
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    const int method = js::GetFunctionNativeReserved(&args.callee(), 0).toInt32();
    auto* self = static_cast<JsEngine*>(SpiderMonkeyEngine::of(cx));
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
    if (self->code_.logger) self->code_.logger(kConsoleMethods[method][1], line);
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

  const JsCode& code_;
  RefPtr<JS::Stencil> stencil_;
  // The next invocation's fresh global (or the reused one) and the function in it.
  JS::PersistentRootedObject global_;
  JS::PersistentRootedValue fn_;
  std::string error_;  // why the next invocation cannot run, if it cannot
};

class JsEngineFactory final : public EngineFactory {
 public:
  explicit JsEngineFactory(JsCode code) : code_(std::move(code)) {}

  Result<std::unique_ptr<Engine>> new_engine(UserCodeWatch& watch) override {
    auto cx = spidermonkey::new_context(code_.limits.memory_bytes, &code_.host_services);
    if (!cx) return fail(ErrorCode::kInternal, "cannot start the JavaScript engine");
    return std::make_unique<JsEngine>(std::move(cx), watch, code_);
  }

 private:
  const JsCode code_;
};

}  // namespace

std::unique_ptr<EngineFactory> make_js_engine_factory(const FunctionSpec& spec,
                                                      const FunctionLimits& limits,
                                                      FunctionLogger logger) {
  spidermonkey::init_once();
  return std::make_unique<JsEngineFactory>(
      JsCode{spec.name, spec.code, spec.host_services, limits, std::move(logger)});
}

}  // namespace nex::runtime
