#include "runtime/js_values.h"

#include <js/ArrayBuffer.h>
#include <js/Conversions.h>
#include <js/JSON.h>
#include <js/experimental/TypedData.h>

#include <cstring>

namespace nex::runtime::jsv {

std::string to_utf8(JSContext* cx, JS::HandleString s) {
  JS::UniqueChars chars = JS_EncodeStringToUTF8(cx, s);
  return chars ? std::string(chars.get()) : std::string();
}

std::string value_to_string(JSContext* cx, JS::HandleValue v) {
  JS::RootedString s(cx, JS::ToString(cx, v));
  if (!s) {
    JS_ClearPendingException(cx);
    return "(unprintable value)";
  }
  return to_utf8(cx, s);
}

// JSON.stringify(v) as UTF-8.
bool stringify(JSContext* cx, JS::HandleValue v, std::string& out) {
  JS::RootedValue copy(cx, v);
  std::u16string text;
  if (!JS_Stringify(
          cx, &copy, nullptr, JS::NullHandleValue,
          [](const char16_t* buf, uint32_t len, void* data) {
            static_cast<std::u16string*>(data)->append(buf, len);
            return true;
          },
          &text))
    return false;
  JS::RootedString s(cx, JS_NewUCStringCopyN(cx, text.data(), text.size()));
  if (!s) return false;
  out = to_utf8(cx, s);
  return true;
}

bool to_bytes(JSContext* cx, JS::HandleValue v, std::string& out) {
  out.clear();
  if (v.isUndefined() || v.isNull()) return true;
  if (v.isString()) {
    JS::RootedString s(cx, v.toString());
    out = to_utf8(cx, s);
    return true;
  }
  if (v.isObject()) {
    JSObject* obj = &v.toObject();
    bool shared = false;
    JS::AutoCheckCannotGC nogc;
    if (JS_IsArrayBufferViewObject(obj)) {
      const size_t len = JS_GetArrayBufferViewByteLength(obj);
      const auto* data = static_cast<const char*>(JS_GetArrayBufferViewData(obj, &shared, nogc));
      out.assign(data ? data : "", data ? len : 0);
      return true;
    }
    if (JS::IsArrayBufferObject(obj)) {
      const size_t len = JS::GetArrayBufferByteLength(obj);
      const auto* data = reinterpret_cast<const char*>(JS::GetArrayBufferData(obj, &shared, nogc));
      out.assign(data ? data : "", data ? len : 0);
      return true;
    }
  }
  return stringify(cx, v, out);
}

JSObject* new_uint8array(JSContext* cx, std::string_view data) {
  JSObject* array = JS_NewUint8Array(cx, data.size());
  if (!array || data.empty()) return array;
  bool shared = false;
  JS::AutoCheckCannotGC nogc;
  std::memcpy(JS_GetUint8ArrayData(array, &shared, nogc), data.data(), data.size());
  return array;
}

JSString* new_string(JSContext* cx, std::string_view utf8) {
  return JS_NewStringCopyUTF8N(cx, JS::UTF8Chars(utf8.data(), utf8.size()));
}

}  // namespace nex::runtime::jsv
