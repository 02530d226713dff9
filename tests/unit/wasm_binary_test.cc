// The deploy-time rewrite that lets a module's memory be recycled between instances: byte for
// byte on hand-built modules, and refused for every shape it does not handle.
#include "runtime/wasm_binary.h"

#include <gtest/gtest.h>

#include <map>

namespace nex::runtime::wasm_binary {
namespace {

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

const std::string kHeader = bytes({0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00});
// (export "memory" (memory 0))
const std::string kExportMemory =
    bytes({0x07, 0x0a, 0x01, 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00});
// (type (func))
const std::string kTypes = bytes({0x01, 0x04, 0x01, 0x60, 0x00, 0x00});
// (import "a" "b" (func (type 0)))
const std::string kImportFunc = bytes({0x02, 0x07, 0x01, 0x01, 'a', 0x01, 'b', 0x00, 0x00});
// the import entry "m" "n" (memory ...), without its limits
const std::string kEntry = bytes({0x01, 'm', 0x01, 'n', 0x02});

TEST(WasmBinary, AModulesOwnMemoryBecomesAnImportOfTheSameLimits) {
  // (memory 1 2) becomes the module's only import.
  auto r = import_own_memory(kHeader + bytes({0x05, 0x04, 0x01, 0x01, 0x01, 0x02}) + kExportMemory,
                             "m", "n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->module, kHeader + bytes({0x02, 0x09, 0x01}) + kEntry + bytes({0x01, 0x01, 0x02}) +
                           kExportMemory);
  EXPECT_EQ(r->initial_pages, 1u);
  EXPECT_EQ(r->maximum_pages, 2u);
}

TEST(WasmBinary, TheMemoryImportFollowsTheModulesOwnImports) {
  // (memory 200) with no maximum: 200 is two LEB128 bytes.
  auto r = import_own_memory(
      kHeader + kTypes + kImportFunc + bytes({0x05, 0x04, 0x01, 0x00, 0xc8, 0x01}) + kExportMemory,
      "m", "n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->module, kHeader + kTypes + bytes({0x02, 0x0f, 0x02}) + kImportFunc.substr(3) +
                           kEntry + bytes({0x00, 0xc8, 0x01}) + kExportMemory);
  EXPECT_EQ(r->initial_pages, 200u);
  EXPECT_FALSE(r->maximum_pages);
}

TEST(WasmBinary, WithoutImportsTheSectionGoesAfterTheTypes) {
  auto r = import_own_memory(
      kHeader + kTypes + bytes({0x05, 0x03, 0x01, 0x00, 0x01}) + kExportMemory, "m", "n");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->module, kHeader + kTypes + bytes({0x02, 0x08, 0x01}) + kEntry + bytes({0x00, 0x01}) +
                           kExportMemory);
}

TEST(WasmBinary, OtherShapesAreLeftAlone) {
  const std::string memory = bytes({0x05, 0x03, 0x01, 0x00, 0x01});
  const std::map<std::string, std::string> cases = {
      {"no memory", kHeader + kTypes + kImportFunc},
      {"two memories", kHeader + bytes({0x05, 0x05, 0x02, 0x00, 0x01, 0x00, 0x01})},
      {"a shared memory", kHeader + bytes({0x05, 0x04, 0x01, 0x03, 0x01, 0x02})},
      {"a 64-bit memory", kHeader + bytes({0x05, 0x03, 0x01, 0x04, 0x01})},
      {"an imported memory too",
       kHeader + bytes({0x02, 0x08, 0x01}) + kEntry + bytes({0x00, 0x01}) + memory},
      {"a section cut short", kHeader + bytes({0x05, 0x09, 0x01, 0x00, 0x01})},
      {"an import cut short", kHeader + bytes({0x02, 0x03, 0x01, 0x01, 'a'}) + memory},
      {"not WebAssembly", "not wasm"},
  };
  for (const auto& [what, module] : cases)
    EXPECT_FALSE(import_own_memory(module, "m", "n")) << what;
}

// Error messages name a function by its export when the module has no names for it.
TEST(WasmBinary, ExportedFunctionsAreNamedByTheirIndexImportsFirst) {
  // (export "run" (func 1)) (export "memory" (memory 0)), function 0 being the import.
  const std::string exports = bytes({0x07, 0x10, 0x02, 0x03, 'r', 'u', 'n', 0x00, 0x01, 0x06, 'm',
                                     'e', 'm', 'o', 'r', 'y', 0x02, 0x00});
  const std::map<uint32_t, std::string> want = {{1, "run"}};
  EXPECT_EQ(exported_functions(kHeader + kTypes + kImportFunc + exports), want);
  EXPECT_TRUE(exported_functions(kHeader + kTypes).empty());
  EXPECT_TRUE(exported_functions("not wasm").empty());
  EXPECT_TRUE(exported_functions(kHeader + bytes({0x07, 0x03, 0x01, 0x03, 'r'})).empty())
      << "a truncated export section";
}

}  // namespace
}  // namespace nex::runtime::wasm_binary
