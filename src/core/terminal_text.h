// Text that others wrote (workloads' log lines, what nodes and commands' programs answer) shown
// on a person's terminal. Printed as it came, such text could end a line and forge the next one,
// or drive the terminal with escape sequences (colours, cursor moves, window titles, hyperlinks,
// on some terminals key remapping). terminal_safe() writes what could do either as visible
// escapes:
//   newline, CR, tab      \n \r \t  (newline and tab kept as they are with LineBreaks::kKeep)
//   other C0 bytes, DEL   \xNN      (ESC is \x1b)
//   bytes not UTF-8       \xNN      (each byte of an invalid, overlong or cut-off sequence)
//   C1 controls, and characters that reorder or break lines (U+0080-U+009F, U+200E, U+200F,
//   U+2028-U+202E, U+2066-U+2069)   \uNNNN
// Everything else, backslashes included, is left as it is: the text can look like an escape
// but cannot be one.
#pragma once

#include <string>
#include <string_view>

namespace nex {

enum class LineBreaks { kEscape, kKeep };

std::string terminal_safe(std::string_view text, LineBreaks breaks = LineBreaks::kEscape);

}  // namespace nex
