#include "runtime/spidermonkey.h"
#include "runtime/encoding_globals.h"
#include "runtime/host_services.h"
#include "runtime/js_values.h"

#include <js/ErrorReport.h>
#include <js/Exception.h>
#include <js/GCAPI.h>
#include <js/Initialization.h>
#include <js/Interrupt.h>
#include <jsfriendapi.h>
#include <malloc.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace nex::runtime::spidermonkey {

namespace {

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

// False ends the script, uncatchably.
bool on_interrupt(JSContext* cx) { return SpiderMonkeyEngine::of(cx)->keep_running(); }

}  // namespace

const JSClass kGlobalClass = {"global", JSCLASS_GLOBAL_FLAGS, &kGlobalClassOps};

void init_once() {
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

void ContextDeleter::operator()(JSContext* cx) const {
  encoding::release_thread();
  JS_DestroyContext(cx);
}

ContextPtr new_context(size_t memory_bytes, const HostServices* host_services) {
  host::bind_thread(host_services);
  ContextPtr cx(JS_NewContext(memory_bytes));
  if (!cx) return nullptr;
  JS_SetNativeStackQuota(cx.get(), 1 << 20);  // well inside the thread's 8 MiB stack
  JS_SetGCParameter(cx.get(), JSGC_MAX_BYTES, static_cast<uint32_t>(memory_bytes));
  // The job queue must exist before the self-hosted code is initialized.
  if (!js::UseInternalJobQueues(cx.get()) || !JS::InitSelfHostedCode(cx.get()) ||
      !JS_AddInterruptCallback(cx.get(), on_interrupt))
    return nullptr;
  return cx;
}

SpiderMonkeyEngine::SpiderMonkeyEngine(ContextPtr cx, UserCodeWatch& watch,
                                       const FunctionLimits& limits)
    : context_(std::move(cx)), cx_(context_.get()), watch_(watch), limits_(limits), home_(cx_) {
  JS_SetContextPrivate(cx_, this);
}

SpiderMonkeyEngine* SpiderMonkeyEngine::of(JSContext* cx) {
  return static_cast<SpiderMonkeyEngine*>(JS_GetContextPrivate(cx));
}

bool SpiderMonkeyEngine::make_home() {
  home_ =
      JS_NewGlobalObject(cx_, &kGlobalClass, nullptr, JS::FireOnNewGlobalHook, JS::RealmOptions());
  return home_ != nullptr;
}

void SpiderMonkeyEngine::interrupt() { JS_RequestInterruptCallback(cx_); }

void SpiderMonkeyEngine::shrink() {
  JS::PrepareForFullGC(cx_);
  JS::NonIncrementalGC(cx_, JS::GCOptions::Shrink, JS::GCReason::API);
  ::malloc_trim(0);
}

void SpiderMonkeyEngine::collect(bool stopped, int collect_every) {
  // Give back what a runaway invocation took; and collect spent globals or instances
  // regularly, before they pile up.
  if (stopped || ++invocations_ % collect_every == 0) JS_GC(cx_);
  if (stopped) ::malloc_trim(0);
}

std::string SpiderMonkeyEngine::failure() {
  if (JS_IsExceptionPending(cx_)) return describe_exception();
  switch (watch_.stop_reason()) {
    case StopReason::kTimedOut:
      return "timed out after " + std::to_string(limits_.timeout.count()) + " ms";
    case StopReason::kOutOfMemory:
      return "memory limit exceeded (" + std::to_string(limits_.memory_bytes >> 20) + " MiB)";
    case StopReason::kRunOn:
    case StopReason::kShuttingDown:
      break;
  }
  return kFunctionStopped;
}

}  // namespace nex::runtime::spidermonkey
