#include "runtime/wasm_errors.h"

#include <js/Exception.h>
#include <js/SavedFrameAPI.h>

#include "runtime/js_values.h"

namespace nex::runtime {
namespace {

// A string property of an error object; empty when it has none.
std::string string_property(JSContext* cx, JS::HandleObject object, const char* name) {
  JS::RootedValue value(cx);
  if (!JS_GetProperty(cx, object, name, &value)) {
    JS_ClearPendingException(cx);
    return "";
  }
  return value.isString() ? jsv::value_to_string(cx, value) : "";
}

// The engine marks a WebAssembly frame's column with this bit, the rest being the function's
// index (its line is the offset of the code, in the module as the engine compiled it).
constexpr uint32_t kWasmColumnBit = 1u << 31;

// The module's function the innermost frame of `stack` is in; empty when that frame is not the
// module's (nex's own JavaScript, or no stack).
std::string function_of(JSContext* cx, JS::HandleObject stack,
                        const std::map<uint32_t, std::string>& exports) {
  uint32_t column = 0;
  if (!stack || JS::GetSavedFrameColumn(cx, nullptr, stack, &column) != JS::SavedFrameResult::Ok ||
      !(column & kWasmColumnBit))
    return "";
  JS::RootedString name(cx);  // from the module's name section; empty without one
  if (JS::GetSavedFrameFunctionDisplayName(cx, nullptr, stack, &name) == JS::SavedFrameResult::Ok &&
      name && JS_GetStringLength(name) > 0)
    return jsv::to_utf8(cx, name);
  const uint32_t index = column & ~kWasmColumnBit;
  auto it = exports.find(index);
  return it != exports.end() ? it->second : std::to_string(index);
}

}  // namespace

std::string describe_wasm_exception(JSContext* cx, const std::string& module_name,
                                    const std::map<uint32_t, std::string>& exports) {
  JS::ExceptionStack taken(cx);
  if (!JS::StealPendingExceptionStack(cx, &taken)) return module_name + ": unknown error";
  if (!taken.exception().isObject())
    return module_name + ": " + jsv::value_to_string(cx, taken.exception());
  JS::RootedObject error(cx, &taken.exception().toObject());
  const std::string kind = string_property(cx, error, "name");
  std::string message = string_property(cx, error, "message");
  if (kind == "CompileError") {
    static constexpr std::string_view kEnginePrefix = "wasm validation error: ";
    if (message.starts_with(kEnginePrefix)) message.erase(0, kEnginePrefix.size());
    return module_name + " is not a valid WebAssembly module: " + message;
  }
  if (kind == "LinkError") return module_name + " cannot be instantiated: " + message;
  JS::RootedObject stack(cx, taken.stack());
  const std::string function = function_of(cx, stack, exports);
  if (kind == "RuntimeError" && !function.empty())
    return module_name + " trapped in function " + function + ": " + message;
  if (message.empty()) message = jsv::value_to_string(cx, taken.exception());
  return module_name + ": " + message + (function.empty() ? "" : " (in function " + function + ")");
}

}  // namespace nex::runtime
