// What went wrong in a WebAssembly function, said in the module's own terms. The engine's report
// names where nex compiled the module ("fn.wasm line 6 > WebAssembly.Module:68"), which means
// nothing to the module's author; this names the function a trap happened in, and what happened.
#pragma once

#include <jsapi.h>

#include <cstdint>
#include <map>
#include <string>

namespace nex::runtime {

// The pending exception (cleared), described for the author of `module_name`:
//   a trap:          "fn.wasm trapped in function divide: integer divide by zero"
//   not compilable:  "fn.wasm is not a valid WebAssembly module: at offset 4: failed to match ..."
//   not linkable:    "fn.wasm cannot be instantiated: <why>"
//   anything else:   "fn.wasm: <message>", and the function it happened in when it is the module's
// A function is named by the module's name section, else by its export (`exports`, see
// wasm_binary::exported_functions), else by its index.
std::string describe_wasm_exception(JSContext* cx, const std::string& module_name,
                                    const std::map<uint32_t, std::string>& exports);

}  // namespace nex::runtime
