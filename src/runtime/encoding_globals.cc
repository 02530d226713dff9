#include "runtime/encoding_globals.h"

#include <js/Array.h>
#include <js/CharacterEncoding.h>
#include <js/CompilationAndEvaluation.h>
#include <js/Conversions.h>
#include <js/SourceText.h>
#include <js/String.h>
#include <js/experimental/JSStencil.h>
#include <js/experimental/TypedData.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/encoding.h"

namespace nex::runtime::encoding {
namespace {

// The classes and functions themselves: the API's shape, its argument checks and its errors, as
// the standards state them. The byte work is done by the natives it is given (see make()).
constexpr char kPrelude[] = R"JS((function (encodeUtf8, encodeUtf8Into, decodeUtf8, toBase64,
                                       fromBase64) {
  const utf8Labels = ['unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'utf-8', 'utf8',
                      'x-unicode20utf8'];
  const hex = (b) => '0x' + b.toString(16).padStart(2, '0');
  // A BufferSource's bytes, without copying them.
  const bytesOf = (input) => {
    if (input === undefined) return new Uint8Array(0);
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input))
      return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    throw new TypeError('TextDecoder.decode: the input must be an ArrayBuffer or a view of one ' +
                        '(a Uint8Array, ...)');
  };

  class TextEncoder {
    get encoding() { return 'utf-8'; }
    encode(input = '') { return encodeUtf8(String(input)); }
    encodeInto(source, destination) {
      if (!(destination instanceof Uint8Array))
        throw new TypeError('TextEncoder.encodeInto: the destination must be a Uint8Array');
      return encodeUtf8Into(String(source), destination);
    }
  }

  class TextDecoder {
    #fatal = false;
    #ignoreBOM = false;
    #bomSeen = false;   // the stream's first character is behind us
    #pending = null;    // the start of a character split between streamed chunks
    constructor(label = 'utf-8', options = undefined) {
      const name = String(label).replace(/^[\t\n\f\r ]+|[\t\n\f\r ]+$/g, '').toLowerCase();
      if (!utf8Labels.includes(name))
        throw new RangeError(`TextDecoder: the encoding '${label}' is not supported ` +
                             '(only utf-8 is)');
      if (options !== undefined && options !== null) {
        if (typeof options !== 'object' && typeof options !== 'function')
          throw new TypeError('TextDecoder: the options must be an object');
        this.#fatal = Boolean(options.fatal);
        this.#ignoreBOM = Boolean(options.ignoreBOM);
      }
    }
    get encoding() { return 'utf-8'; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input = undefined, options = undefined) {
      const stream = options !== undefined && options !== null && Boolean(options.stream);
      let bytes = bytesOf(input);
      if (this.#pending) {
        const joined = new Uint8Array(this.#pending.length + bytes.length);
        joined.set(this.#pending);
        joined.set(bytes, this.#pending.length);
        bytes = joined;
        this.#pending = null;
      }
      const decoded = decodeUtf8(bytes, this.#fatal, stream);
      if (typeof decoded === 'number') {
        this.#bomSeen = false;
        throw new TypeError(`TextDecoder: the data is not valid UTF-8 (byte ${hex(bytes[decoded])}` +
                            ` at offset ${decoded})`);
      }
      let [text, pending] = decoded;
      if (pending) this.#pending = bytes.slice(bytes.length - pending);
      if (!this.#ignoreBOM && !this.#bomSeen && text.length) {
        if (text.charCodeAt(0) === 0xFEFF) text = text.slice(1);
        this.#bomSeen = true;
      }
      if (!stream) this.#bomSeen = false;
      return text;
    }
  }

  for (const C of [TextEncoder, TextDecoder])
    Object.defineProperty(C.prototype, Symbol.toStringTag, {value: C.name, configurable: true});

  // What a DOMException named InvalidCharacterError carries: its name and code.
  const invalidCharacter = (message) => {
    const error = new Error(message);
    Object.defineProperty(error, 'name', {value: 'InvalidCharacterError', writable: true,
                                          configurable: true});
    Object.defineProperty(error, 'code', {value: 5, writable: true, configurable: true});
    return error;
  };
  const needsOne = (name, count) => {
    if (count < 1) throw new TypeError(`${name}: 1 argument required, but only 0 present`);
  };

  function btoa(data) {
    needsOne('btoa', arguments.length);
    const text = String(data);
    const encoded = toBase64(text);
    if (typeof encoded === 'number') {
      const code = text.charCodeAt(encoded).toString(16).toUpperCase().padStart(4, '0');
      throw invalidCharacter(`btoa: the string has a character outside Latin-1 (U+${code} at ` +
                             `index ${encoded}); encode it to bytes first, e.g. with TextEncoder`);
    }
    return encoded;
  }

  function atob(data) {
    needsOne('atob', arguments.length);
    const text = String(data);
    const decoded = fromBase64(text);
    if (typeof decoded === 'number') {
      throw invalidCharacter(decoded >= 0
          ? `atob: the string is not valid base64 ('${text[decoded]}' at index ${decoded})`
          : `atob: the string is not valid base64 (its ${-decoded - 1} characters, whitespace ` +
            'and padding aside, are not whole bytes)');
    }
    return decoded;
  }

  return {TextEncoder, TextDecoder, atob, btoa};
}))JS";

// The UTF-8 decoder of the Encoding Standard: each invalid sequence's maximal part becomes one
// U+FFFD (or, `fatal`, ends the decoding at `error_at`); with `stream`, an incomplete character at
// the end is left `pending` (its bytes, counted from the end) for the next chunk.
struct Decoded {
  std::u16string text;
  size_t pending = 0;
  std::optional<size_t> error_at;
};

Decoded decode_utf8(std::string_view bytes, bool fatal, bool stream) {
  Decoded out;
  out.text.reserve(bytes.size());
  uint32_t code_point = 0;
  int needed = 0, seen = 0;
  uint8_t lower = 0x80, upper = 0xBF;
  size_t lead = 0;
  // An invalid sequence ends at `at`: a replacement character, or the end of a fatal decoding.
  auto invalid = [&](size_t at) {
    code_point = 0;
    needed = seen = 0;
    lower = 0x80;
    upper = 0xBF;
    if (fatal)
      out.error_at = at;
    else
      out.text.push_back(u'\uFFFD');
    return !fatal;
  };
  for (size_t i = 0; i < bytes.size();) {
    const auto b = static_cast<uint8_t>(bytes[i]);
    if (needed == 0) {
      lead = i++;
      if (b < 0x80) {
        out.text.push_back(b);
      } else if (b >= 0xC2 && b <= 0xDF) {
        needed = 1;
        code_point = b & 0x1F;
      } else if (b >= 0xE0 && b <= 0xEF) {
        if (b == 0xE0) lower = 0xA0;
        if (b == 0xED) upper = 0x9F;  // no surrogates
        needed = 2;
        code_point = b & 0x0F;
      } else if (b >= 0xF0 && b <= 0xF4) {
        if (b == 0xF0) lower = 0x90;
        if (b == 0xF4) upper = 0x8F;  // nothing above U+10FFFF
        needed = 3;
        code_point = b & 0x07;
      } else if (!invalid(lead)) {
        return out;
      }
      continue;
    }
    if (b < lower || b > upper) {  // the sequence ends before this byte, which starts anew
      if (!invalid(i)) return out;
      continue;
    }
    ++i;
    lower = 0x80;
    upper = 0xBF;
    code_point = (code_point << 6) | (b & 0x3F);
    if (++seen < needed) continue;
    if (code_point > 0xFFFF) {
      out.text.push_back(static_cast<char16_t>(0xD800 + ((code_point - 0x10000) >> 10)));
      out.text.push_back(static_cast<char16_t>(0xDC00 + ((code_point - 0x10000) & 0x3FF)));
    } else {
      out.text.push_back(static_cast<char16_t>(code_point));
    }
    code_point = 0;
    needed = seen = 0;
  }
  if (needed != 0) {
    if (stream)
      out.pending = bytes.size() - lead;
    else
      invalid(lead);
  }
  return out;
}

bool is_base64_whitespace(char16_t c) {
  return c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ';
}

int base64_value(char16_t c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// The forgiving-base64 decode of HTML: whitespace skipped, padding optional. The bytes, or the
// index of the first character that is not base64, or -(n + 1) when its n base64 characters
// cannot be whole bytes.
std::variant<std::string, int64_t> forgiving_base64_decode(std::u16string_view text) {
  std::vector<size_t> at;  // where each character kept was in `text`
  for (size_t i = 0; i < text.size(); ++i) {
    if (!is_base64_whitespace(text[i])) at.push_back(i);
  }
  if (at.size() % 4 == 0) {
    for (int pad = 0; pad < 2 && !at.empty() && text[at.back()] == '='; ++pad) at.pop_back();
  }
  if (at.size() % 4 == 1) return -static_cast<int64_t>(at.size()) - 1;
  std::string bytes;
  uint32_t buffer = 0;
  int bits = 0;
  for (size_t i : at) {
    const int value = base64_value(text[i]);
    if (value < 0) return static_cast<int64_t>(i);
    buffer = (buffer << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return bytes;
}

// A string's UTF-16 code units.
std::optional<std::u16string> code_units(JSContext* cx, JS::HandleString s) {
  std::u16string units(JS_GetStringLength(s), u'\0');
  if (!JS_CopyStringChars(cx, mozilla::Range<char16_t>(units.data(), units.size()), s))
    return std::nullopt;
  return units;
}

// encodeUtf8(string): a Uint8Array of its UTF-8, lone surrogates as U+FFFD.
bool encode_utf8(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedString s(cx, JS::ToString(cx, args.get(0)));
  if (!s || !JS_EnsureLinearString(cx, s)) return false;
  const size_t length = JS::GetDeflatedUTF8StringLength(JS_ASSERT_STRING_IS_LINEAR(s));
  JS::RootedObject array(cx, JS_NewUint8Array(cx, length));
  if (!array) return false;
  if (length > 0) {
    bool shared = false;
    JS::AutoCheckCannotGC nogc;
    auto* data = reinterpret_cast<char*>(JS_GetUint8ArrayData(array, &shared, nogc));
    // The string may have moved while the array was made; it is still linear.
    JS::DeflateStringToUTF8Buffer(JS_ASSERT_STRING_IS_LINEAR(s), mozilla::Span(data, length));
  }
  args.rval().setObject(*array);
  return true;
}

// encodeUtf8Into(string, uint8Array): {read, written}, whole characters only.
bool encode_utf8_into(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedString s(cx, JS::ToString(cx, args.get(0)));
  if (!s || !JS_EnsureLinearString(cx, s)) return false;
  if (!args.get(1).isObject() || !JS_IsUint8Array(&args[1].toObject())) {
    JS_ReportErrorASCII(cx, "encodeInto: the destination must be a Uint8Array");
    return false;
  }
  size_t read = 0, written = 0;
  {
    JSObject* target = &args[1].toObject();
    bool shared = false;
    JS::AutoCheckCannotGC nogc;
    auto* data = reinterpret_cast<char*>(JS_GetUint8ArrayData(target, &shared, nogc));
    const size_t length = JS_GetTypedArrayLength(target);
    // A linear string is encoded without allocating: nothing here can collect garbage.
    auto counts = JS_EncodeStringToUTF8BufferPartial(cx, s, mozilla::Span(data, length));
    if (!counts) {
      JS_ReportOutOfMemory(cx);
      return false;
    }
    read = mozilla::Get<0>(*counts);
    written = mozilla::Get<1>(*counts);
  }
  JS::RootedObject result(cx, JS_NewPlainObject(cx));
  if (!result ||
      !JS_DefineProperty(cx, result, "read", static_cast<double>(read), JSPROP_ENUMERATE) ||
      !JS_DefineProperty(cx, result, "written", static_cast<double>(written), JSPROP_ENUMERATE))
    return false;
  args.rval().setObject(*result);
  return true;
}

// decodeUtf8(uint8Array, fatal, stream): [text, bytes left pending], or the offset of the invalid
// byte when fatal.
bool decode_utf8_native(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  if (!args.get(0).isObject() || !JS_IsUint8Array(&args[0].toObject())) {
    JS_ReportErrorASCII(cx, "decode: expected a Uint8Array");
    return false;
  }
  const bool fatal = JS::ToBoolean(args.get(1)), stream = JS::ToBoolean(args.get(2));
  std::string bytes;
  {
    JSObject* source = &args[0].toObject();
    bool shared = false;
    JS::AutoCheckCannotGC nogc;
    const auto* data = reinterpret_cast<const char*>(JS_GetUint8ArrayData(source, &shared, nogc));
    bytes.assign(data ? data : "", data ? JS_GetTypedArrayLength(source) : 0);
  }
  const bool ascii = std::all_of(bytes.begin(), bytes.end(),
                                 [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  JS::RootedString text(cx);
  size_t pending = 0;
  if (ascii) {  // the common case: the bytes are the (Latin-1) string already
    text = JS_NewStringCopyN(cx, bytes.data(), bytes.size());
  } else {
    Decoded decoded = decode_utf8(bytes, fatal, stream);
    if (decoded.error_at) {
      args.rval().setNumber(static_cast<double>(*decoded.error_at));
      return true;
    }
    pending = decoded.pending;
    text = JS_NewUCStringCopyN(cx, decoded.text.data(), decoded.text.size());
  }
  if (!text) return false;
  JS::RootedValueArray<2> parts(cx);
  parts[0].setString(text);
  parts[1].setNumber(static_cast<double>(pending));
  JS::RootedObject array(cx, JS::NewArrayObject(cx, parts));
  if (!array) return false;
  args.rval().setObject(*array);
  return true;
}

// toBase64(string): its Latin-1 bytes in base64, or the index of a character beyond Latin-1.
bool to_base64(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedString s(cx, JS::ToString(cx, args.get(0)));
  if (!s) return false;
  auto units = code_units(cx, s);
  if (!units) return false;
  std::vector<uint8_t> bytes(units->size());
  for (size_t i = 0; i < units->size(); ++i) {
    if ((*units)[i] > 0xFF) {
      args.rval().setNumber(static_cast<double>(i));
      return true;
    }
    bytes[i] = static_cast<uint8_t>((*units)[i]);
  }
  const std::string encoded = base64_encode(bytes, Base64::kStandard);
  JSString* out = JS_NewStringCopyN(cx, encoded.data(), encoded.size());
  if (!out) return false;
  args.rval().setString(out);
  return true;
}

// fromBase64(string): the decoded bytes as a Latin-1 string, or a number saying why not (see
// forgiving_base64_decode).
bool from_base64(JSContext* cx, unsigned argc, JS::Value* vp) {
  JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
  JS::RootedString s(cx, JS::ToString(cx, args.get(0)));
  if (!s) return false;
  auto units = code_units(cx, s);
  if (!units) return false;
  auto decoded = forgiving_base64_decode(*units);
  if (const auto* why = std::get_if<int64_t>(&decoded)) {
    args.rval().setNumber(static_cast<double>(*why));
    return true;
  }
  const auto& bytes = std::get<std::string>(decoded);
  JSString* out = JS_NewStringCopyN(cx, bytes.data(), bytes.size());
  if (!out) return false;
  args.rval().setString(out);
  return true;
}

// This thread's compiled prelude.
thread_local RefPtr<JS::Stencil> t_prelude;

JS::CompileOptions& prelude_options(JS::CompileOptions& options) {
  options.setFileAndLine("nex:encoding", 1);
  options.setForceFullParse();  // instantiated in many globals: parsed once
  options.setHideScriptFromDebugger(true);
  return options;
}

// {TextEncoder, TextDecoder, atob, btoa}, made in the current global.
JSObject* make(JSContext* cx) {
  if (!t_prelude) {
    JS::CompileOptions options(cx);
    JS::SourceText<mozilla::Utf8Unit> text;
    if (!text.init(cx, kPrelude, sizeof kPrelude - 1, JS::SourceOwnership::Borrowed))
      return nullptr;
    t_prelude = JS::CompileGlobalScriptToStencil(cx, prelude_options(options), text);
    if (!t_prelude) return nullptr;
  }
  JS::CompileOptions options(cx);
  JS::InstantiateOptions instantiate(prelude_options(options));
  JS::RootedScript script(cx, JS::InstantiateGlobalStencil(cx, instantiate, t_prelude));
  JS::RootedValue factory(cx);
  if (!script || !JS_ExecuteScript(cx, script, &factory)) return nullptr;
  static constexpr struct {
    const char* name;
    JSNative native;
    unsigned args;
  } kNatives[] = {{"encodeUtf8", encode_utf8, 1},
                  {"encodeUtf8Into", encode_utf8_into, 2},
                  {"decodeUtf8", decode_utf8_native, 3},
                  {"toBase64", to_base64, 1},
                  {"fromBase64", from_base64, 1}};
  JS::RootedValueArray<std::size(kNatives)> natives(cx);
  for (size_t i = 0; i < std::size(kNatives); ++i) {
    JSFunction* f = JS_NewFunction(cx, kNatives[i].native, kNatives[i].args, 0, kNatives[i].name);
    if (!f) return nullptr;
    natives[i].setObject(*JS_GetFunctionObject(f));
  }
  JS::RootedValue made(cx);
  if (!JS_CallFunctionValue(cx, nullptr, factory, natives, &made) || !made.isObject())
    return nullptr;
  return &made.toObject();
}

bool is_ours(jsid id) {
  if (!id.isAtom()) return false;
  JSLinearString* name = id.toLinearString();
  return std::any_of(std::begin(kNames), std::end(kNames),
                     [&](const char* ours) { return JS_LinearStringEqualsAscii(name, ours); });
}

}  // namespace

bool resolve(JSContext* cx, JS::HandleObject global, JS::HandleId id, bool* resolved) {
  *resolved = false;
  if (!is_ours(id)) return true;
  JS::RootedObject made(cx, make(cx));
  if (!made) return false;
  JS::RootedValue value(cx);
  for (const char* name : kNames) {
    bool has = false;  // already there (the one asked for is not): left as the script made it
    if (!JS_AlreadyHasOwnProperty(cx, global, name, &has)) return false;
    if (has) continue;
    // As the standards' interfaces and operations are: writable and configurable, not enumerable.
    if (!JS_GetProperty(cx, made, name, &value) || !JS_DefineProperty(cx, global, name, value, 0))
      return false;
  }
  *resolved = true;
  return true;
}

bool may_resolve(jsid id) { return is_ours(id); }

void release_thread() { t_prelude = nullptr; }

}  // namespace nex::runtime::encoding
