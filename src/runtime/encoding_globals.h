// TextEncoder, TextDecoder, atob and btoa in a JavaScript function's global, as the WHATWG
// Encoding Standard (UTF-8 only) and HTML define them: the first things a function reaches for to
// turn its Uint8Array payload into text and back.
//
// They are made lazily, as the engine makes its own standard classes: the global class's resolve
// hook calls resolve() when a script first names one, so the many invocations that never do pay
// nothing for them in their fresh global. Their JavaScript half is compiled once per thread (each
// worker thread has its own engine) and instantiated in each global that uses it.
#pragma once

#include <jsapi.h>

namespace nex::runtime::encoding {

// The globals this defines.
inline constexpr const char* kNames[] = {"TextEncoder", "TextDecoder", "atob", "btoa"};

// A global's resolve hook: when `id` is one of kNames, defines every one of them `global` does not
// have yet and sets *resolved. false on an engine error (pending).
bool resolve(JSContext* cx, JS::HandleObject global, JS::HandleId id, bool* resolved);
// Whether resolve() may define `id` (the engine asks without a context).
bool may_resolve(jsid id);

// Frees what this thread compiled; call before the thread's engine is destroyed.
void release_thread();

}  // namespace nex::runtime::encoding
