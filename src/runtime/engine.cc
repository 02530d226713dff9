#include "runtime/engine.h"

#include <string>

namespace nex::runtime {

// Each engine's file defines its maker.
std::unique_ptr<EngineFactory> make_js_engine_factory(const FunctionSpec& spec,
                                                      const FunctionLimits& limits,
                                                      FunctionLogger logger);
std::unique_ptr<EngineFactory> make_wasm_engine_factory(const FunctionSpec& spec,
                                                        const FunctionLimits& limits,
                                                        FunctionLogger logger);

namespace {

struct EngineEntry {
  Language language;
  std::unique_ptr<EngineFactory> (*make)(const FunctionSpec&, const FunctionLimits&,
                                         FunctionLogger);
};

// The engines, by the language they run: a new engine is registered here.
constexpr EngineEntry kEngines[] = {
    {Language::kJavaScript, make_js_engine_factory},
    {Language::kWasm, make_wasm_engine_factory},
};

}  // namespace

Result<std::unique_ptr<EngineFactory>> make_engine_factory(const FunctionSpec& spec,
                                                           const FunctionLimits& limits,
                                                           FunctionLogger logger) {
  for (const EngineEntry& entry : kEngines)
    if (entry.language == spec.language) return entry.make(spec, limits, std::move(logger));
  return fail(ErrorCode::kInvalidArgument,
              "no engine runs language " + std::to_string(static_cast<int>(spec.language)));
}

}  // namespace nex::runtime
