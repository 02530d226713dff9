#include "runtime/host_services.h"

#include <js/Array.h>
#include <js/JSON.h>
#include <jsfriendapi.h>

#include <nlohmann/json.hpp>

#include "api/host_services.h"
#include "core/encoding.h"
#include "runtime/js_values.h"
#include "runtime/wasi.h"

namespace nex::runtime::host {
namespace {

namespace wire = api::host_services;
using nlohmann::json;

thread_local const HostServices* t_services = nullptr;

HostReply call_node(const HostCall& call) {
  if (!t_services || !*t_services)
    return {wire::kUnavailable, "host services are not available here", {}};
  return (*t_services)(call);
}

// requestMany answers: a JSON array of base64 payloads.
std::vector<std::string> decode_many(const std::string& body) {
  std::vector<std::string> out;
  auto j = json::parse(body, nullptr, false);
  if (!j.is_array()) return out;
  for (const auto& item : j) {
    if (!item.is_string()) continue;
    auto bytes = base64_decode(item.get<std::string>(), Base64::kStandard);
    if (bytes) out.emplace_back(as_chars(*bytes));
  }
  return out;
}

// An HTTP answer {status, headers, body[, body_base64]}: the status, the header lines and the
// body's bytes.
struct HttpResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // values joined with ", "
  std::string body;
};

HttpResponse decode_http(const std::string& text) {
  HttpResponse r;
  auto j = json::parse(text, nullptr, false);
  if (!j.is_object()) return r;
  r.status = j.value("status", 0);
  if (auto h = j.find("headers"); h != j.end() && h->is_object()) {
    for (const auto& [name, values] : h->items()) {
      std::string joined;
      for (const auto& v : values) {
        if (!v.is_string()) continue;
        if (!joined.empty()) joined += ", ";
        joined += v.get<std::string>();
      }
      r.headers.emplace_back(name, joined);
    }
  }
  if (auto b64 = j.find("body_base64"); b64 != j.end() && b64->is_string()) {
    if (auto bytes = base64_decode(b64->get<std::string>(), Base64::kStandard))
      r.body.assign(as_chars(*bytes));
  } else {
    r.body = j.value("body", "");
  }
  return r;
}

// ---- JavaScript ---------------------------------------------------------------------------

enum class Shape {
  kBytesOrNull,  // Uint8Array, or null when missing (404)
  kBytes,        // Uint8Array
  kJson,         // the parsed JSON answer
  kNothing,      // undefined
  kMany,         // Array of Uint8Array
  kHttp,         // {status, headers, response, body}
};

struct JsMethod {
  const char* object;  // property of hostServices
  const char* name;    // the JavaScript method
  const char* service;
  const char* method;  // on the wire
  const char* header;  // the first argument's header, if it takes one
  bool value;          // takes a value (payload, body) next
  Shape shape;
};

constexpr JsMethod kJsMethods[] = {
    {"kv", "get", wire::kKeyValue, "get", wire::kHeaderKey, false, Shape::kBytesOrNull},
    {"kv", "set", wire::kKeyValue, "set", wire::kHeaderKey, true, Shape::kJson},
    {"kv", "delete", wire::kKeyValue, "delete", wire::kHeaderKey, false, Shape::kNothing},
    {"kv", "keys", wire::kKeyValue, "keys", nullptr, false, Shape::kJson},
    {"objectStore", "get", wire::kObjectStore, "get", wire::kHeaderObjectName, false,
     Shape::kBytesOrNull},
    {"objectStore", "put", wire::kObjectStore, "put", wire::kHeaderObjectName, true, Shape::kJson},
    {"objectStore", "delete", wire::kObjectStore, "delete", wire::kHeaderObjectName, false,
     Shape::kNothing},
    {"objectStore", "list", wire::kObjectStore, "list", nullptr, false, Shape::kJson},
    {"messaging", "publish", wire::kMessaging, "publish", wire::kHeaderSubject, true,
     Shape::kNothing},
    {"messaging", "request", wire::kMessaging, "request", wire::kHeaderSubject, true,
     Shape::kBytes},
    {"messaging", "requestMany", wire::kMessaging, "requestMany", wire::kHeaderSubject, true,
     Shape::kMany},
    {"http", "get", wire::kHttp, "get", wire::kHeaderUrl, false, Shape::kHttp},
    {"http", "post", wire::kHttp, "post", wire::kHeaderUrl, true, Shape::kHttp},
    {"http", "put", wire::kHttp, "put", wire::kHeaderUrl, true, Shape::kHttp},
    {"http", "patch", wire::kHttp, "patch", wire::kHeaderUrl, true, Shape::kHttp},
    {"http", "del", wire::kHttp, "delete", wire::kHeaderUrl, false, Shape::kHttp},
    {"http", "delete", wire::kHttp, "delete", wire::kHeaderUrl, false, Shape::kHttp},
    {"http", "head", wire::kHttp, "head", wire::kHeaderUrl, false, Shape::kHttp},
};

bool set_prop(JSContext* cx, JS::HandleObject obj, const char* name, JS::HandleValue v) {
  return JS_DefineProperty(cx, obj, name, v, JSPROP_ENUMERATE);
}

bool http_object(JSContext* cx, const std::string& body, JS::MutableHandleValue out) {
  const HttpResponse r = decode_http(body);
  JS::RootedObject obj(cx, JS_NewPlainObject(cx));
  JS::RootedObject headers(cx, JS_NewPlainObject(cx));
  if (!obj || !headers) return false;
  for (const auto& [name, value] : r.headers) {
    JS::RootedValue v(cx, JS::StringValue(jsv::new_string(cx, value)));
    if (!JS_DefineProperty(cx, headers, name.c_str(), v, JSPROP_ENUMERATE)) return false;
  }
  JS::RootedValue v(cx, JS::Int32Value(r.status));
  if (!set_prop(cx, obj, "status", v)) return false;
  v.setObject(*headers);
  if (!set_prop(cx, obj, "headers", v)) return false;
  JSString* text = jsv::new_string(cx, r.body);
  if (!text) {  // not UTF-8: no text form
    JS_ClearPendingException(cx);
    v.setNull();
  } else {
    v.setString(text);
  }
  if (!set_prop(cx, obj, "response", v)) return false;  // the text, as Nex named it
  JSObject* bytes = jsv::new_uint8array(cx, r.body);
  if (!bytes) return false;
  v.setObject(*bytes);
  if (!set_prop(cx, obj, "body", v)) return false;
  out.setObject(*obj);
  return true;
}

bool js_method(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedObject callee(cx, &args.callee());
  const JsMethod& m = kJsMethods[js::GetFunctionNativeReserved(callee, 0).toInt32()];
  const std::string label = std::string("hostServices.") + m.object + "." + m.name;
  HostCall call{m.service, m.method, {}, {}};
  unsigned next = 0;
  if (m.header) {
    if (args.length() == 0 || args[0].isNullOrUndefined()) {
      JS_ReportErrorUTF8(cx, "%s: the first argument (%s) is required", label.c_str(), m.header);
      return false;
    }
    JS::RootedValue first(cx, args[0]);
    call.headers.emplace_back(m.header, jsv::value_to_string(cx, first));
    next = 1;
  }
  if (m.value) {
    JS::RootedValue value(cx, args.get(next++));
    if (!jsv::to_bytes(cx, value, call.body)) return false;
  }
  if (m.shape == Shape::kHttp && args.get(next).isObject()) {  // {headers: {...}}
    JS::RootedObject options(cx, &args[next].toObject());
    JS::RootedValue headers(cx);
    if (!JS_GetProperty(cx, options, "headers", &headers)) return false;
    if (headers.isObject()) {
      std::string text;
      if (!jsv::stringify(cx, headers, text)) return false;
      call.headers.emplace_back(wire::kHeaderHttpHeaders, text);
    }
  }
  HostReply r = call_node(call);
  if (r.code == wire::kNotFound && m.shape == Shape::kBytesOrNull) {
    args.rval().setNull();
    return true;
  }
  if (r.code != wire::kOk) {
    JS_ReportErrorUTF8(cx, "%s: %s", label.c_str(), r.message.c_str());
    return false;
  }
  switch (m.shape) {
    case Shape::kNothing:
      args.rval().setUndefined();
      return true;
    case Shape::kBytes:
    case Shape::kBytesOrNull: {
      JSObject* bytes = jsv::new_uint8array(cx, r.body);
      if (!bytes) return false;
      args.rval().setObject(*bytes);
      return true;
    }
    case Shape::kJson: {
      JS::RootedString text(cx, jsv::new_string(cx, r.body));
      return text && JS_ParseJSON(cx, text, args.rval());
    }
    case Shape::kMany: {
      const auto answers = decode_many(r.body);
      JS::RootedObject array(cx, JS::NewArrayObject(cx, answers.size()));
      if (!array) return false;
      for (size_t i = 0; i < answers.size(); ++i) {
        JS::RootedObject bytes(cx, jsv::new_uint8array(cx, answers[i]));
        if (!bytes || !JS_SetElement(cx, array, static_cast<uint32_t>(i), bytes)) return false;
      }
      args.rval().setObject(*array);
      return true;
    }
    case Shape::kHttp:
      return http_object(cx, r.body, args.rval());
  }
  return false;
}

// The getter of global.hostServices: builds the object, then replaces itself with it.
bool js_getter(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedObject global(cx, JS::CurrentGlobalOrNull(cx));
  JS::RootedObject root(cx, JS_NewPlainObject(cx));
  if (!global || !root) return false;
  for (size_t i = 0; i < std::size(kJsMethods); ++i) {
    const JsMethod& m = kJsMethods[i];
    JS::RootedValue holder(cx);
    if (!JS_GetProperty(cx, root, m.object, &holder)) return false;
    if (!holder.isObject()) {
      JSObject* o = JS_NewPlainObject(cx);
      if (!o) return false;
      holder.setObject(*o);
      if (!JS_DefineProperty(cx, root, m.object, holder, JSPROP_ENUMERATE | JSPROP_READONLY))
        return false;
    }
    JS::RootedObject h(cx, &holder.toObject());
    JSFunction* f = js::DefineFunctionWithReserved(cx, h, m.name, js_method, 2, JSPROP_ENUMERATE);
    if (!f) return false;
    js::SetFunctionNativeReserved(JS_GetFunctionObject(f), 0, JS::Int32Value(static_cast<int>(i)));
  }
  JS::RootedValue v(cx, JS::ObjectValue(*root));
  if (!JS_DefineProperty(cx, global, "hostServices", v, JSPROP_READONLY)) return false;
  args.rval().set(v);
  return true;
}

// ---- WebAssembly --------------------------------------------------------------------------

struct WasmMethod {
  const char* name;
  const char* service;
  const char* method;
  const char* header;  // (ptr, len) of the first parameter, if any
  bool value;          // then (ptr, len) of a value
};

constexpr WasmMethod kWasmMethods[] = {
    {"kv_get", wire::kKeyValue, "get", wire::kHeaderKey, false},
    {"kv_set", wire::kKeyValue, "set", wire::kHeaderKey, true},
    {"kv_delete", wire::kKeyValue, "delete", wire::kHeaderKey, false},
    {"kv_keys", wire::kKeyValue, "keys", nullptr, false},
    {"object_get", wire::kObjectStore, "get", wire::kHeaderObjectName, false},
    {"object_put", wire::kObjectStore, "put", wire::kHeaderObjectName, true},
    {"object_delete", wire::kObjectStore, "delete", wire::kHeaderObjectName, false},
    {"object_list", wire::kObjectStore, "list", nullptr, false},
    {"publish", wire::kMessaging, "publish", wire::kHeaderSubject, true},
    {"request", wire::kMessaging, "request", wire::kHeaderSubject, true},
    {"request_many", wire::kMessaging, "requestMany", wire::kHeaderSubject, true},
};

uint32_t arg_u32(const JS::CallArgs& args, unsigned i) {
  const JS::Value v = args.get(i);
  if (v.isInt32()) return static_cast<uint32_t>(v.toInt32());
  if (v.isDouble()) return static_cast<uint32_t>(static_cast<int64_t>(v.toDouble()));
  return 0;
}

// Reads the (ptr, len) pair at argument `i`.
bool guest_string(JSContext* cx, wasi::Invocation& inv, const JS::CallArgs& args, unsigned i,
                  std::string& out) {
  return wasi::read_memory(cx, inv, arg_u32(args, i), arg_u32(args, i + 1), out);
}

// The guest's answer: the result's length, or minus the failure's code (the result is then the
// message).
bool finish_call(const JS::CallArgs& args, wasi::Invocation& inv, HostReply r) {
  if (r.code == wire::kOk) {
    inv.host_result = std::move(r.body);
    args.rval().setInt32(static_cast<int32_t>(inv.host_result.size()));
  } else {
    inv.host_result = std::move(r.message);
    args.rval().setInt32(-r.code);
  }
  return true;
}

bool fault(const JS::CallArgs& args, wasi::Invocation& inv) {
  return finish_call(args, inv,
                     {wire::kBadRequest, "an argument lies outside the module's memory", {}});
}

bool wasm_method(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedObject callee(cx, &args.callee());
  const WasmMethod& m = kWasmMethods[js::GetFunctionNativeReserved(callee, 0).toInt32()];
  wasi::Invocation* inv = wasi::current();
  if (!inv) {
    args.rval().setInt32(-wire::kUnavailable);
    return true;
  }
  HostCall call{m.service, m.method, {}, {}};
  unsigned next = 0;
  if (m.header) {
    std::string param;
    if (!guest_string(cx, *inv, args, 0, param)) return fault(args, *inv);
    call.headers.emplace_back(m.header, std::move(param));
    next = 2;
  }
  if (m.value && !guest_string(cx, *inv, args, next, call.body)) return fault(args, *inv);
  HostReply r = call_node(call);
  if (r.code == wire::kOk && call.method == "requestMany") {
    // Frames: a little-endian u32 length, then the payload, per answer.
    std::string frames;
    for (const auto& a : decode_many(r.body)) {
      const uint32_t n = static_cast<uint32_t>(a.size());
      for (int b = 0; b < 4; ++b) frames.push_back(static_cast<char>((n >> (8 * b)) & 0xff));
      frames += a;
    }
    r.body = std::move(frames);
  }
  return finish_call(args, *inv, std::move(r));
}

// http_request(method, url, headers_json, body): each a (ptr, len) pair; the result is the
// response's body, http_status() its status.
bool wasm_http_request(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  wasi::Invocation* inv = wasi::current();
  if (!inv) return false;
  std::string method, url, headers;
  HostCall call{wire::kHttp, {}, {}, {}};
  if (!guest_string(cx, *inv, args, 0, method) || !guest_string(cx, *inv, args, 2, url) ||
      !guest_string(cx, *inv, args, 4, headers) || !guest_string(cx, *inv, args, 6, call.body))
    return fault(args, *inv);
  for (auto& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  call.method = method;
  call.headers.emplace_back(wire::kHeaderUrl, url);
  if (!headers.empty()) call.headers.emplace_back(wire::kHeaderHttpHeaders, headers);
  HostReply r = call_node(call);
  inv->http_status = 0;
  if (r.code == wire::kOk) {
    HttpResponse response = decode_http(r.body);
    inv->http_status = response.status;
    r.body = std::move(response.body);
  }
  return finish_call(args, *inv, std::move(r));
}

bool wasm_http_status(JSContext*, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  wasi::Invocation* inv = wasi::current();
  args.rval().setInt32(inv ? inv->http_status : 0);
  return true;
}

// result(ptr, capacity): copies the last call's result (or error message); returns the bytes
// copied.
bool wasm_result(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  wasi::Invocation* inv = wasi::current();
  if (!inv) return false;
  const size_t n = std::min<size_t>(inv->host_result.size(), arg_u32(args, 1));
  if (!wasi::write_memory(cx, *inv, arg_u32(args, 0),
                          std::string_view(inv->host_result).substr(0, n))) {
    args.rval().setInt32(0);
    return true;
  }
  args.rval().setInt32(static_cast<int32_t>(n));
  return true;
}

}  // namespace

void bind_thread(const HostServices* services) { t_services = services; }

bool define_js(JSContext* cx, JS::HandleObject global) {
  return JS_DefineProperty(cx, global, "hostServices", js_getter, nullptr, 0);
}

JSObject* make_wasm_imports(JSContext* cx) {
  JS::RootedObject obj(cx, JS_NewPlainObject(cx));
  if (!obj) return nullptr;
  for (size_t i = 0; i < std::size(kWasmMethods); ++i) {
    JSFunction* f = js::DefineFunctionWithReserved(cx, obj, kWasmMethods[i].name, wasm_method, 0,
                                                   JSPROP_ENUMERATE);
    if (!f) return nullptr;
    js::SetFunctionNativeReserved(JS_GetFunctionObject(f), 0, JS::Int32Value(static_cast<int>(i)));
  }
  if (!JS_DefineFunction(cx, obj, "http_request", wasm_http_request, 8, JSPROP_ENUMERATE) ||
      !JS_DefineFunction(cx, obj, "http_status", wasm_http_status, 0, JSPROP_ENUMERATE) ||
      !JS_DefineFunction(cx, obj, "result", wasm_result, 2, JSPROP_ENUMERATE))
    return nullptr;
  return obj;
}

}  // namespace nex::runtime::host
