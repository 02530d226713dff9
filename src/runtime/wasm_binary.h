// Edits of WebAssembly module binaries, done once at deploy.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace nex::runtime::wasm_binary {

// A module whose own memory was turned into an import, and that memory's limits (64 KiB pages).
struct ImportedMemory {
  std::string module;  // the rewritten binary
  uint32_t initial_pages = 0;
  std::optional<uint32_t> maximum_pages;
};

// Rewrites a module that defines exactly one memory (not shared, 32-bit, none imported) so that
// it imports that memory as (import_module, import_name) instead; indices, exports and data
// segments are unchanged, since the memory stays index 0. Given a new memory of the same limits,
// an instance of the result behaves exactly like one of the original. nullopt when the module
// has another shape or is not a well-formed binary (the engine then reports why).
std::optional<ImportedMemory> import_own_memory(std::string_view wasm,
                                                std::string_view import_module,
                                                std::string_view import_name);

// The names a module exports functions under, by function index (imported functions first, as
// the engine numbers them); empty when the binary cannot be read.
std::map<uint32_t, std::string> exported_functions(std::string_view wasm);

}  // namespace nex::runtime::wasm_binary
