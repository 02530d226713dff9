// The WebAssembly engine, on SpiderMonkey: a WASI preview1 command module (see wasi.h); each
// invocation is a fresh instance running _start with argv = [name, subject], stdin = payload,
// and its stdout is the reply. Small memories are recycled, zeroed, rather than mapped anew
// (see wasm_binary.h). Registered in kEngines (engine.cc).
#include "runtime/host_services.h"
#include "runtime/spidermonkey.h"
#include "runtime/wasi.h"
#include "runtime/wasm_binary.h"
#include "runtime/wasm_errors.h"

#include <js/CompilationAndEvaluation.h>
#include <js/SourceText.h>
#include <js/experimental/TypedData.h>
#include <jsapi.h>

#include <cstring>
#include <map>
#include <optional>
#include <vector>

namespace nex::runtime {

namespace {

// Measured with function_runtime_bench: WebAssembly instances are small, and a collection's
// fixed cost matters more (at 128 they cost 1 us more each than at 256).
constexpr int kCollectInstancesEvery = 256;
// WebAssembly memories up to this size are recycled: each invocation still gets a fresh
// instance, with the memory zeroed instead of mapped anew (mapping and unmapping, with the
// page faults and TLB shootdowns that come with it, cost more than a 2-page instance).
// Zeroing grows with the size: measured, it was about even with a new mapping at 17 pages
// (Rust's default memory) and worse at 30. Larger memories are left to the engine, which
// maps only the pages used.
constexpr uint64_t kWasmPage = 64 * 1024;
constexpr uint64_t kRecycleMemoryUpTo = 20 * kWasmPage;
constexpr const char* kRecycledMemoryModule = "nex:memory";

// Compiles the module and checks it is a WASI command that needs nothing nex lacks. The
// helper's `memory`, when given, is the limits of the memory the module imports from
// `memoryModule` (see WasmCode::recycled).
constexpr const char* kSetupHelper = R"((function (bytes, imports, memoryModule, memory) {
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

// What every worker's engine of one function is made from.
struct WasmCode {
  std::string name;  // argv[0], and the module's name in error messages
  std::string bytes;
  HostServices host_services;
  FunctionLimits limits;
  FunctionLogger logger;
  std::vector<std::string> environ;                     // "KEY=VALUE"
  std::optional<wasm_binary::ImportedMemory> recycled;  // when its memory is recycled
  std::map<uint32_t, std::string> exports;              // function names, for errors
};

class WasmEngine final : public spidermonkey::SpiderMonkeyEngine {
 public:
  WasmEngine(spidermonkey::ContextPtr cx, UserCodeWatch& watch, const WasmCode& code)
      : SpiderMonkeyEngine(std::move(cx), watch, code.limits),
        code_(code),
        module_(cx_),
        imports_(cx_),
        instantiate_(cx_),
        new_memory_(cx_),
        memory_(cx_) {}

  Status compile() override {
    if (!make_home() || !setup()) return fail(ErrorCode::kInvalidArgument, error_);
    return {};
  }

  // A fresh instance; proc_exit(0) is success; another code, a trap or a limit is an error.
  InvocationResult run(const Invocation& job) override {
    JSAutoRealm realm(cx_, home_);
    wasi::Invocation inv;
    inv.args = {code_.name, job.subject};
    inv.environ = code_.environ;
    inv.stdin_data = job.payload;
    inv.stop = watch_.stop_flag();
    inv.stderr_line = [this](std::string_view line) {
      if (code_.logger) code_.logger("error", line);
    };
    JS::RootedObject memory(cx_);
    inv.memory = &memory;
    wasi::ActiveInvocation active(inv);
    if (!new_memory_.isUndefined() && !reset_memory()) return {false, failure()};
    const bool ok = watch_.guarded([&] { return start_instance(&memory); });
    wasi::finish(inv);
    if (!ok && inv.exit_code && watch_.stop_reason() == StopReason::kRunOn) {
      JS_ClearPendingException(cx_);
      if (*inv.exit_code != 0) return {false, "exited with code " + std::to_string(*inv.exit_code)};
    } else if (!ok) {
      return {false, failure()};
    }
    return {true, std::move(inv.stdout_data)};
  }

  void finish(bool stopped) override { collect(stopped, kCollectInstancesEvery); }

 private:
  std::string describe_exception() override {
    return describe_wasm_exception(cx_, code_.name, code_.exports);
  }

  // Evaluates the setup helper and compiles the module with it: the module with its memory
  // recycled if it can be; if that does not compile, the original, so that errors name the
  // user's own bytes.
  bool setup() {
    JSAutoRealm realm(cx_, home_);
    JS::CompileOptions options(cx_);
    options.setFileAndLine("nex:wasm-setup", 1);
    JS::SourceText<mozilla::Utf8Unit> text;
    JS::RootedValue helper(cx_);
    if (!text.init(cx_, kSetupHelper, std::strlen(kSetupHelper), JS::SourceOwnership::Borrowed) ||
        !JS::Evaluate(cx_, options, text, &helper)) {
      error_ = spidermonkey::take_exception(cx_);
      return false;
    }
    JS::RootedValue parts(cx_);
    bool compiled = code_.recycled && compile_module(helper, code_.recycled->module, true, &parts);
    if (!compiled) {
      JS_ClearPendingException(cx_);
      compiled = compile_module(helper, code_.bytes, false, &parts);
      if (!compiled) {
        error_ = describe_exception();
        return false;
      }
    }
    return keep_parts(parts);
  }

  // Keeps what the helper returned: [module, imports, instantiate, new memory or undefined].
  bool keep_parts(JS::HandleValue parts) {
    JS::RootedObject array(cx_, &parts.toObject());
    JS::RootedValue v(cx_);
    if (!JS_GetElement(cx_, array, 0, &v)) return false;
    module_ = v;
    if (!JS_GetElement(cx_, array, 1, &v)) return false;
    imports_ = v;
    if (!JS_GetElement(cx_, array, 2, &v)) return false;
    instantiate_ = v;
    if (!JS_GetElement(cx_, array, 3, &v)) return false;
    new_memory_ = v;  // undefined: each instance makes its own memory
    return true;
  }

  // Calls the setup helper on `code` with fresh imports.
  bool compile_module(JS::HandleValue helper, std::string_view code, bool recycle,
                      JS::MutableHandleValue parts) {
    JS::RootedObject bytes(cx_, JS_NewUint8Array(cx_, code.size()));
    JS::RootedObject wasi_imports(cx_, wasi::make_imports(cx_));
    JS::RootedObject nex_imports(cx_, host::make_wasm_imports(cx_));
    JS::RootedObject imports(cx_, JS_NewPlainObject(cx_));
    if (!bytes || !wasi_imports || !nex_imports || !imports ||
        !JS_DefineProperty(cx_, imports, wasi::kModule, wasi_imports, JSPROP_ENUMERATE) ||
        !JS_DefineProperty(cx_, imports, host::kWasmModule, nex_imports, JSPROP_ENUMERATE))
      return false;
    {
      bool shared = false;
      JS::AutoCheckCannotGC nogc;
      std::memcpy(JS_GetUint8ArrayData(bytes, &shared, nogc), code.data(), code.size());
    }
    JS::RootedValueArray<4> args(cx_);
    args[0].setObject(*bytes);
    args[1].setObject(*imports);
    if (recycle) {
      const wasm_binary::ImportedMemory& recycled = *code_.recycled;
      JS::RootedObject limits(cx_, JS_NewPlainObject(cx_));
      JS::RootedString module(cx_, JS_NewStringCopyZ(cx_, kRecycledMemoryModule));
      if (!limits || !module ||
          !JS_DefineProperty(cx_, limits, "initial", recycled.initial_pages, JSPROP_ENUMERATE) ||
          (recycled.maximum_pages &&
           !JS_DefineProperty(cx_, limits, "maximum", *recycled.maximum_pages, JSPROP_ENUMERATE)))
        return false;
      args[2].setString(module);
      args[3].setObject(*limits);
    }
    return JS_CallFunctionValue(cx_, nullptr, helper, args, parts);
  }

  // The recycled memory for the next instance: zeroed, as a new memory would be; false on an
  // engine error.
  bool reset_memory() {
    if (memory_) {
      const wasi::MemoryBytes bytes = wasi::memory_bytes(cx_, memory_);
      if (!bytes.data) return false;
      if (bytes.length == size_t{code_.recycled->initial_pages} * kWasmPage) {
        std::memset(bytes.data, 0, bytes.length);
        return true;
      }
      // It grew, and a memory cannot shrink: a new one.
    }
    JS::RootedValue memory(cx_);
    if (!JS_CallFunctionValue(cx_, nullptr, new_memory_, JS::HandleValueArray::empty(), &memory) ||
        !memory.isObject())
      return false;
    memory_ = &memory.toObject();
    return true;
  }

  // User code: instantiates the module and runs _start; `memory` is the instance's memory.
  bool start_instance(JS::MutableHandleObject memory) {
    JS::RootedValueArray<2> args(cx_);
    args[0].set(module_);
    args[1].set(imports_);
    JS::RootedValue exports(cx_);
    if (!JS_CallFunctionValue(cx_, nullptr, instantiate_, args, &exports)) return false;
    JS::RootedObject ex(cx_, &exports.toObject());
    JS::RootedValue mem(cx_);
    if (!JS_GetProperty(cx_, ex, "memory", &mem) || !mem.isObject()) return false;
    memory.set(&mem.toObject());
    JS::RootedValue rv(cx_);
    return JS_CallFunctionName(cx_, ex, "_start", JS::HandleValueArray::empty(), &rv);
  }

  const WasmCode& code_;
  // The compiled module, the import object and an instantiating helper; when the module's
  // memory is recycled, a helper that makes a new one, and the one in use.
  JS::PersistentRootedValue module_, imports_, instantiate_, new_memory_;
  JS::PersistentRootedObject memory_;
  std::string error_;  // why the module did not compile
};

class WasmEngineFactory final : public EngineFactory {
 public:
  explicit WasmEngineFactory(WasmCode code) : code_(std::move(code)) {}

  Result<std::unique_ptr<Engine>> new_engine(UserCodeWatch& watch) override {
    auto cx = spidermonkey::new_context(code_.limits.memory_bytes, &code_.host_services);
    if (!cx) return fail(ErrorCode::kInternal, "cannot start the JavaScript engine");
    return std::make_unique<WasmEngine>(std::move(cx), watch, code_);
  }

 private:
  const WasmCode code_;
};

}  // namespace

std::unique_ptr<EngineFactory> make_wasm_engine_factory(const FunctionSpec& spec,
                                                        const FunctionLimits& limits,
                                                        FunctionLogger logger) {
  spidermonkey::init_once();
  WasmCode code{spec.name, spec.code, spec.host_services, limits, std::move(logger), {}, {}, {}};
  for (const auto& [k, v] : spec.environment) code.environ.push_back(k + "=" + v);
  code.exports = wasm_binary::exported_functions(code.bytes);
  code.recycled = wasm_binary::import_own_memory(code.bytes, kRecycledMemoryModule, "memory");
  if (code.recycled && uint64_t{code.recycled->initial_pages} * kWasmPage > kRecycleMemoryUpTo)
    code.recycled.reset();
  return std::make_unique<WasmEngineFactory>(std::move(code));
}

}  // namespace nex::runtime
