#include "core/terminal_text.h"

#include <fmt/format.h>

namespace nex {
namespace {

// The code point of the well-formed UTF-8 sequence at text[at] and its length, or length 0 when
// there is none (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
struct Utf8Char {
  char32_t code = 0;
  size_t length = 0;
};

Utf8Char decode_utf8(std::string_view text, size_t at) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[at + i]); };
  const unsigned char lead = byte(0);
  size_t length = 0;
  char32_t code = 0, min = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code = lead & 0x1F, min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code = lead & 0x0F, min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code = lead & 0x07, min = 0x10000;
  } else {
    return {};
  }
  if (at + length > text.size()) return {};
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return {};
    code = (code << 6) | (byte(i) & 0x3F);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return {};
  return {code, length};
}

// C1 controls, and the characters that change the order or the lines text is shown in.
bool invisible_control(char32_t c) {
  return (c >= 0x80 && c <= 0x9F) || c == 0x200E || c == 0x200F || (c >= 0x2028 && c <= 0x202E) ||
         (c >= 0x2066 && c <= 0x2069);
}

}  // namespace

std::string terminal_safe(std::string_view text, LineBreaks breaks) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    if (c == '\n' || c == '\t') {
      if (breaks == LineBreaks::kKeep) {
        out += static_cast<char>(c);
      } else {
        out += c == '\n' ? "\\n" : "\\t";
      }
      ++i;
      continue;
    }
    if (c == '\r') {
      out += "\\r";
      ++i;
      continue;
    }
    const Utf8Char u = c >= 0x80 ? decode_utf8(text, i) : Utf8Char{};
    if (u.length == 0) {  // C0, DEL, or a byte that is not UTF-8
      out += fmt::format("\\x{:02x}", c);
      ++i;
    } else if (invisible_control(u.code)) {
      out += fmt::format("\\u{:04x}", static_cast<uint32_t>(u.code));
      i += u.length;
    } else {
      out.append(text.substr(i, u.length));
      i += u.length;
    }
  }
  return out;
}

}  // namespace nex
