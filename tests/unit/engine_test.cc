// The engine registry (runtime/engine.cc): a function's language picks its engine, and a
// language no engine is registered for is refused when the function is created.
#include "runtime/function.h"

#include <gtest/gtest.h>

namespace nex::runtime {
namespace {

TEST(EngineRegistry, ALanguageWithNoEngineIsRefusedAtCreate) {
  const auto unregistered = static_cast<Language>(99);
  auto f = Function::create({.language = unregistered, .name = "f", .code = "(s, p) => p"}, {}, {});
  ASSERT_FALSE(f) << "a function was made for a language with no engine";
  EXPECT_EQ(f.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(f.error().message.find("no engine"), std::string::npos) << f.error().message;
}

TEST(EngineRegistry, EachLanguageRunsOnItsOwnEngine) {
  auto js = Function::create(
      {.language = Language::kJavaScript, .name = "f.js", .code = "(s, p) => 'js'"}, {}, {});
  ASSERT_TRUE(js) << js.error().message;
  EXPECT_EQ((*js)->call("s", "").body, "js");
  // JavaScript source is not a WebAssembly module: the WebAssembly engine says so.
  auto wasm = Function::create(
      {.language = Language::kWasm, .name = "f.wasm", .code = "(s, p) => 'js'"}, {}, {});
  ASSERT_FALSE(wasm);
  EXPECT_NE(wasm.error().message.find("f.wasm is not a valid WebAssembly module"),
            std::string::npos)
      << wasm.error().message;
}

}  // namespace
}  // namespace nex::runtime
