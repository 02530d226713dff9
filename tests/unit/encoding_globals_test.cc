// TextEncoder, TextDecoder, atob and btoa in a JavaScript function, as the WHATWG Encoding and
// HTML standards define them: UTF-8 both ways, invalid input replaced (or refused with `fatal`),
// forgiving base64 and its errors.
#include <gtest/gtest.h>

#include "runtime/function.h"

namespace nex::runtime {
namespace {

// The reply of a function of `source` to one invocation with `payload`; an error fails the test.
std::string reply(const std::string& source, const std::string& payload = "",
                  FunctionLimits limits = {}) {
  auto f = Function::create({.name = "text.js", .code = source}, limits, {});
  EXPECT_TRUE(f) << f.error().message;
  if (!f) return "";
  auto r = (*f)->call("s", payload);
  EXPECT_TRUE(r.ok) << r.body;
  return r.body;
}

TEST(EncodingGlobals, TextEncoderEncodesUtf8AndReplacesLoneSurrogates) {
  EXPECT_EQ(reply("(s, p) => {\n"
                  "  const e = new TextEncoder();\n"
                  "  return [e.encoding, e.encode('h\\u20ac\\u{1F600}\\uD800').join(' '),\n"
                  "          e.encode().length, e.encode(42).join(' ')].join('|');\n"
                  "}"),
            "utf-8|104 226 130 172 240 159 152 128 239 191 189|0|52 50");
  // The reply is the bytes the function encoded, whatever text it was.
  EXPECT_EQ(reply("(s, p) => new TextEncoder().encode('h\\u00e9llo \\u20ac\\0!')"),
            std::string("h\xc3\xa9llo \xe2\x82\xac\0!", 12));
  // encodeInto writes whole characters only, and says how much it read and wrote.
  EXPECT_EQ(reply("(s, p) => {\n"
                  "  const into = new Uint8Array(5).fill(0);\n"
                  "  const r = new TextEncoder().encodeInto('a\\u20ac\\u{1F600}', into);\n"
                  "  return [r.read, r.written, into.join(' ')].join('|');\n"
                  "}"),
            "2|4|97 226 130 172 0");
}

TEST(EncodingGlobals, TextDecoderReplacesInvalidSequencesAsTheEncodingStandardSays) {
  // Each case: bytes, and the text the Encoding Standard's UTF-8 decoder makes of them.
  const std::string cases = R"JS([
    [[0x68, 0x69], 'hi'],
    [[0xE2, 0x82, 0xAC], '\u20AC'],
    [[0xF0, 0x9F, 0x98, 0x80], '\u{1F600}'],
    [[0x41, 0x00, 0x42], 'A\0B'],
    [[0xFF], '\uFFFD'],
    [[0x80, 0x41], '\uFFFDA'],
    [[0xC0, 0x80], '\uFFFD\uFFFD'],
    [[0xC1, 0xBF], '\uFFFD\uFFFD'],
    [[0xE0, 0x80, 0x80], '\uFFFD\uFFFD\uFFFD'],
    [[0xED, 0xA0, 0x80], '\uFFFD\uFFFD\uFFFD'],
    [[0xF4, 0x90, 0x80, 0x80], '\uFFFD\uFFFD\uFFFD\uFFFD'],
    [[0xF5, 0x80], '\uFFFD\uFFFD'],
    [[0xE2, 0x82], '\uFFFD'],
    [[0xE2, 0x82, 0x41], '\uFFFDA'],
    [[0xF0, 0x9F, 0x98], '\uFFFD'],
    [[0xF0, 0x9F, 0x41, 0x98], '\uFFFDA\uFFFD'],
    [[0xEF, 0xBB, 0xBF, 0x41], 'A'],
    [[0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF], '\uFEFF'],
  ])JS";
  EXPECT_EQ(reply("(s, p) => " + cases +
                  ".filter(([bytes, text]) => new TextDecoder().decode(new Uint8Array(bytes))"
                  " !== text).map(([bytes]) => bytes.join(',')).join(' ; ')"),
            "")
      << "the cases above decoded otherwise";
  EXPECT_EQ(reply("(s, p) => new TextDecoder().decode(p)", "h\xc3\xa9llo \xff!"),
            "h\xc3\xa9llo \xef\xbf\xbd!");
}

TEST(EncodingGlobals, TextDecoderTakesAnyBufferStreamsAndKnowsItsOptions) {
  EXPECT_EQ(
      reply("(s, p) => {\n"
            "  const d = new TextDecoder('UTF8 ');\n"
            "  const bytes = new Uint8Array([0x78, 0xE2, 0x82, 0xAC, 0x79]);\n"
            "  return [d.encoding, d.fatal, d.ignoreBOM, d.decode(),\n"
            "    d.decode(bytes.buffer), d.decode(new DataView(bytes.buffer, 1, 3)),\n"
            "    d.decode(bytes.subarray(4)), d.decode(new Uint16Array([0x6968]))].join('|');\n"
            "}"),
      "utf-8|false|false||x\xe2\x82\xacy|\xe2\x82\xac|y|hi");
  // A character split between chunks is whole when streamed, replaced when the stream ends.
  EXPECT_EQ(reply("(s, p) => {\n"
                  "  const d = new TextDecoder();\n"
                  "  const one = d.decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x61, 0xE2]),"
                  " {stream: true});\n"
                  "  const two = d.decode(new Uint8Array([0x82, 0xAC, 0xE2]), {stream: true});\n"
                  "  const end = d.decode();\n"
                  "  return [one, two, end, d.decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x62]))]"
                  ".join('|');\n"
                  "}"),
            "a|\xe2\x82\xac|\xef\xbf\xbd|b");
  EXPECT_EQ(reply("(s, p) => {\n"
                  "  const d = new TextDecoder('utf-8', {ignoreBOM: true});\n"
                  "  return d.ignoreBOM + '|' + d.decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x61]))"
                  ".length;\n"
                  "}"),
            "true|2");
  // fatal: invalid input is a TypeError instead of U+FFFD.
  EXPECT_EQ(reply("(s, p) => {\n"
                  "  const d = new TextDecoder('utf-8', {fatal: true});\n"
                  "  try { d.decode(new Uint8Array([0x61, 0xFF])); return 'decoded'; }\n"
                  "  catch (e) { return [d.fatal, e instanceof TypeError, e.message].join('|'); }\n"
                  "}"),
            "true|true|TextDecoder: the data is not valid UTF-8 (byte 0xff at offset 1)");
  EXPECT_EQ(reply("(s, p) => {\n"
                  "  const d = new TextDecoder('utf-8', {fatal: true});\n"
                  "  d.decode(new Uint8Array([0xE2]), {stream: true});\n"
                  "  try { d.decode(); return 'decoded'; } catch (e) { return e.name; }\n"
                  "}"),
            "TypeError");
  EXPECT_EQ(
      reply(
          "(s, p) => {\n"
          "  const errors = [];\n"
          "  for (const f of [() => new TextDecoder('latin1'), () => new "
          "TextDecoder().decode('x'),\n"
          "                   () => TextDecoder()])\n"
          "    try { f(); errors.push('none'); }\n"
          "    catch (e) { errors.push(errors.length < 2 ? e.name + ': ' + e.message : e.name); }\n"
          "  return errors.join('\\n');\n"
          "}"),
      "RangeError: TextDecoder: the encoding 'latin1' is not supported (only utf-8 is)\n"
      "TypeError: TextDecoder.decode: the input must be an ArrayBuffer or a view of one "
      "(a Uint8Array, ...)\n"
      "TypeError");
}

TEST(EncodingGlobals, AtobAndBtoaAreForgivingBase64) {
  EXPECT_EQ(reply("(s, p) => [btoa('hello'), btoa(''), btoa('\\xff\\x00'), atob('aGVsbG8='),\n"
                  "  atob(' aGVs\\nbG8 '), atob('aGVsbG8'), atob('/wA=').charCodeAt(0),\n"
                  "  atob(btoa('\\x00\\x01\\xfe')).length].join('|')"),
            "aGVsbG8=||/wA=|hello|hello|hello|255|3");
  // Bad input throws an InvalidCharacterError, as a DOMException of that name would be.
  EXPECT_EQ(
      reply("(s, p) => ['\\u20ac', 'a', 'ab*d', 'ab=c', 'abc==', 'aGVsbG8=x'].map((x, i) => {\n"
            "  try { (i ? atob : btoa)(x); return 'accepted ' + x; }\n"
            "  catch (e) { return e.name + (e instanceof Error ? '' : ' (not an Error)'); }\n"
            "}).join(',')"),
      "InvalidCharacterError,InvalidCharacterError,InvalidCharacterError,"
      "InvalidCharacterError,InvalidCharacterError,InvalidCharacterError");
  EXPECT_EQ(
      reply("(s, p) => { try { btoa('caf\\u00e9 \\u20ac'); } catch (e) { return String(e); } }"),
      "InvalidCharacterError: btoa: the string has a character outside Latin-1 (U+20AC at "
      "index 5); encode it to bytes first, e.g. with TextEncoder");
  EXPECT_EQ(reply("(s, p) => { try { atob('ab*d'); } catch (e) { return String(e); } }"),
            "InvalidCharacterError: atob: the string is not valid base64 ('*' at index 2)");
}

TEST(EncodingGlobals, AWarmGlobalGetsThemFrozenAndAFreshOneGetsThemAnew) {
  FunctionLimits warm;
  warm.reuse_global = true;
  warm.concurrency = 1;
  // Each invocation uses them, then tampers with them: the next one must find them intact.
  const std::string tamper =
      "(s, p) => { const found = new TextEncoder().encode('a').length + btoa('a');\n"
      "  TextEncoder.prototype.encode = () => 'evil'; globalThis.btoa = () => 'evil';\n"
      "  return found; }";
  for (const auto& limits : {FunctionLimits{}, warm}) {
    auto f = Function::create({.name = "t.js", .code = tamper}, limits, {});
    ASSERT_TRUE(f) << f.error().message;
    for (int i = 0; i < 3; ++i) EXPECT_EQ((*f)->call("s", "").body, "1YQ==") << "invocation " << i;
  }
}

}  // namespace
}  // namespace nex::runtime
