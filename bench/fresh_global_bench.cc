// What SpiderMonkey itself charges for a fresh JavaScript global, step by step: the floor under
// a JavaScript function's cost per invocation, whatever nex does around it. Uses the engine's
// API directly, on this thread, the way the function runtime makes each invocation's global (a
// realm and compartment of its own in the worker's zone; spent globals collected every 128).
//
//   build/bin/fresh_global_bench [--globals N]
//
// Each row adds one step to the row above and prints the time per global, in wall time and in
// the CPU time of the whole process (the engine's helper threads too). The last line, for
// comparison, is the call alone in one global used again and again (which nex does not do: state
// would leak from one invocation to the next).
#include <js/CompilationAndEvaluation.h>
#include <js/GCAPI.h>
#include <js/Initialization.h>
#include <js/SourceText.h>
#include <js/experimental/JSStencil.h>
#include <js/experimental/TypedData.h>
#include <jsapi.h>
#include <jsfriendapi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu_time.h"

namespace {

using Clock = std::chrono::steady_clock;

const JSClass kGlobalClass = {"global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps};
constexpr const char* kEcho = "(subject, payload) => payload;";
constexpr int kCollectEvery = 128;

enum Step { kGlobal, kObjectAndFunction, kUint8Array, kScript, kCall };

const char* const kRows[] = {
    "a new global (realm, compartment)",          "+ Object and Function, its first classes",
    "+ Uint8Array and ArrayBuffer (the payload)", "+ the compiled echo script run in it",
    "+ the call, with a 5-byte payload",
};

// Calls the echo as an invocation does: a subject string and a fresh Uint8Array payload.
bool call_echo(JSContext* cx, JS::HandleObject global, JS::HandleValue fn) {
  JSAutoRealm realm(cx, global);
  JS::RootedValueArray<2> args(cx);
  JS::RootedObject payload(cx, JS_NewUint8Array(cx, 5));
  JS::RootedString subject(cx, JS_NewStringCopyZ(cx, "bench.echo"));
  if (!payload || !subject) return false;
  args[0].setString(subject);
  args[1].setObject(*payload);
  JS::RootedValue rv(cx);
  return JS_CallFunctionValue(cx, global, fn, args, &rv);
}

// Makes a global and takes it through every step up to `last`; false on an engine error. The
// global and the echo function are left in `global` and `fn`.
bool one_global(JSContext* cx, JS::HandleObject home, JS::Stencil* stencil, Step last,
                JS::MutableHandleObject global, JS::MutableHandleValue fn) {
  JS::RealmOptions options;
  options.creationOptions().setNewCompartmentInExistingZone(home);
  global.set(JS_NewGlobalObject(cx, &kGlobalClass, nullptr, JS::FireOnNewGlobalHook, options));
  if (!global) return false;
  if (last == kGlobal) return true;
  JSAutoRealm realm(cx, global);
  if (!JS::GetRealmObjectPrototype(cx) || !JS::GetRealmFunctionPrototype(cx)) return false;
  if (last == kObjectAndFunction) return true;
  if (!JS_NewUint8Array(cx, 0)) return false;
  if (last == kUint8Array) return true;
  JS::CompileOptions compile(cx);
  JS::InstantiateOptions instantiate(compile);
  JS::RootedScript script(cx, JS::InstantiateGlobalStencil(cx, instantiate, stencil));
  if (!script || !JS_ExecuteScript(cx, script, fn)) return false;
  return last == kScript || call_echo(cx, global, fn);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 20000;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--globals") == 0) n = std::max(1, std::atoi(argv[i + 1]));
  if (!JS_Init()) return 1;
  JSContext* cx = JS_NewContext(512u << 20);
  if (!cx || !js::UseInternalJobQueues(cx) || !JS::InitSelfHostedCode(cx)) return 1;
  int status = 0;
  {
    JS::RootedObject home(cx, JS_NewGlobalObject(cx, &kGlobalClass, nullptr,
                                                 JS::FireOnNewGlobalHook, JS::RealmOptions()));
    RefPtr<JS::Stencil> stencil;
    if (home) {
      JSAutoRealm realm(cx, home);
      JS::CompileOptions options(cx);
      options.setForceFullParse();
      JS::SourceText<mozilla::Utf8Unit> text;
      if (text.init(cx, kEcho, std::strlen(kEcho), JS::SourceOwnership::Borrowed))
        stencil = JS::CompileGlobalScriptToStencil(cx, options, text);
    }
    if (!stencil) {
      std::fprintf(stderr, "cannot set up the engine\n");
      status = 1;
    }
    if (status == 0) {
      std::printf("\nSpiderMonkey's cost of a fresh global, %d globals per row, best of 5\n\n", n);
      std::printf("| %-42s | us per global | the step alone | CPU us per global |\n", "step");
      std::printf("|%s|---------------|----------------|-------------------|\n",
                  std::string(44, '-').c_str());
    }
    // Time and CPU time per call of `body` in the fastest of five rounds of n; negative on an
    // engine error.
    struct Cost {
      double us = 1e9, cpu_us = 0;
    };
    auto measure = [&](auto&& body) {
      Cost best;
      for (int round = 0; round < 5; ++round) {
        const double cpu0 = nex::bench::process_cpu_seconds();
        const auto t0 = Clock::now();
        for (int i = 0; i < n; ++i) {
          if (!body()) return Cost{-1, -1};
          if ((i + 1) % kCollectEvery == 0) JS_GC(cx);
        }
        JS_GC(cx);
        const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / n;
        if (us < best.us) best = {us, (nex::bench::process_cpu_seconds() - cpu0) * 1e6 / n};
      }
      return best;
    };
    JS::RootedObject global(cx);
    JS::RootedValue fn(cx);
    double previous = 0;
    for (int step = kGlobal; status == 0 && step <= kCall; ++step) {
      const Cost cost = measure(
          [&] { return one_global(cx, home, stencil, static_cast<Step>(step), &global, &fn); });
      const double us = cost.us;
      if (us < 0) {
        std::fprintf(stderr, "%s: engine error\n", kRows[step]);
        status = 1;
        break;
      }
      std::printf("| %-42s | %13.1f | %14.1f | %17.1f |\n", kRows[step], us, us - previous,
                  cost.cpu_us);
      previous = us;
    }
    if (status == 0 && one_global(cx, home, stencil, kScript, &global, &fn)) {
      const Cost cost = measure([&] { return call_echo(cx, global, fn); });
      std::printf("\nFor comparison, the call alone in one global used again and again: %.1f us\n",
                  cost.us);
    }
  }
  JS_DestroyContext(cx);
  JS_ShutDown();
  return status;
}
