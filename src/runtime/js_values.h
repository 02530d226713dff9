// Converting between JavaScript values and bytes, shared by the function runtime and the host
// services bindings.
#pragma once

#include <jsapi.h>

#include <string>
#include <string_view>

namespace nex::runtime::jsv {

std::string to_utf8(JSContext* cx, JS::HandleString s);
// String(v) as UTF-8; never fails (clears an exception).
std::string value_to_string(JSContext* cx, JS::HandleValue v);
// JSON.stringify(v) as UTF-8.
bool stringify(JSContext* cx, JS::HandleValue v, std::string& out);
// The bytes a value stands for: undefined and null are empty, a string is its UTF-8, an
// ArrayBuffer or any view of one is its bytes, anything else is its JSON.
bool to_bytes(JSContext* cx, JS::HandleValue v, std::string& out);
// A new Uint8Array holding a copy of `data`.
JSObject* new_uint8array(JSContext* cx, std::string_view data);
// A new string from UTF-8 bytes.
JSString* new_string(JSContext* cx, std::string_view utf8);

}  // namespace nex::runtime::jsv
