#include "core/terminal_text.h"

#include <gtest/gtest.h>

namespace nex {
namespace {

TEST(TerminalText, ControlCharactersCannotForgeLinesOrDriveTheTerminal) {
  EXPECT_EQ(terminal_safe("ok\x1b[31mred\nINFO forged\r\tx"),
            "ok\\x1b[31mred\\nINFO forged\\r\\tx");
  EXPECT_EQ(terminal_safe(std::string("a\0b\x07\x7f", 5)), "a\\x00b\\x07\\x7f");
  // OSC 8 hyperlinks and window titles end with BEL or ST; both are inert once escaped.
  EXPECT_EQ(terminal_safe("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
}

TEST(TerminalText, InvalidUtf8IsShownByteByByte) {
  EXPECT_EQ(terminal_safe("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(terminal_safe("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(terminal_safe("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
  EXPECT_EQ(terminal_safe("cut \xe2\x82"), "cut \\xe2\\x82");   // a sequence cut off
}

TEST(TerminalText, C1AndReorderingCharactersAreEscapedOtherTextIsNot) {
  EXPECT_EQ(terminal_safe("\xc2\x9b"
                          "31m"),
            "\\u009b31m");  // CSI as one character
  EXPECT_EQ(terminal_safe("abc\xe2\x80\xae"
                          "cba"),
            "abc\\u202ecba");  // right-to-left override
  EXPECT_EQ(terminal_safe("naïve ✓ 🚀 C:\\dir"), "naïve ✓ 🚀 C:\\dir");
}

TEST(TerminalText, KeepingLineBreaksStillEscapesTheRest) {
  EXPECT_EQ(terminal_safe("one\n\ttwo\r\x1b[2J\n", LineBreaks::kKeep), "one\n\ttwo\\r\\x1b[2J\n");
}

}  // namespace
}  // namespace nex
