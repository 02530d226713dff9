#include "runtime/wasm_binary.h"

#include <vector>

namespace nex::runtime::wasm_binary {
namespace {

constexpr std::string_view kHeader("\0asm\x01\0\0\0", 8);
constexpr uint8_t kImportSection = 2;
constexpr uint8_t kExportSection = 7;
constexpr uint8_t kMemorySection = 5;
constexpr uint8_t kTypeSection = 1;
constexpr uint8_t kCustomSection = 0;

// Reads the binary's encodings, failing (ok = false) at the first byte out of place.
struct Reader {
  std::string_view in;
  size_t at = 0;
  bool ok = true;

  bool done() const { return at >= in.size(); }
  uint8_t byte() {
    if (at >= in.size()) {
      ok = false;
      return 0;
    }
    return static_cast<uint8_t>(in[at++]);
  }
  uint64_t leb(int max_bits) {
    uint64_t value = 0;
    for (int shift = 0; ok && shift < max_bits; shift += 7) {
      const uint8_t b = byte();
      value |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return value;
    }
    ok = false;
    return 0;
  }
  uint32_t u32() { return static_cast<uint32_t>(leb(32)); }
  std::string_view bytes(size_t n) {
    if (!ok || n > in.size() - at) {
      ok = false;
      return {};
    }
    const std::string_view s = in.substr(at, n);
    at += n;
    return s;
  }
  void name() { (void)bytes(u32()); }
};

void put_u32(std::string& out, uint32_t v) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    if (v) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (v);
}

void put_name(std::string& out, std::string_view name) {
  put_u32(out, static_cast<uint32_t>(name.size()));
  out.append(name);
}

void put_section(std::string& out, uint8_t id, std::string_view content) {
  out.push_back(static_cast<char>(id));
  put_u32(out, static_cast<uint32_t>(content.size()));
  out.append(content);
}

struct Limits {
  uint32_t flags = 0;
  uint64_t min = 0;
  std::optional<uint64_t> max;
};

Limits limits(Reader& r) {
  Limits l;
  l.flags = r.u32();
  const int bits = (l.flags & 0x04) ? 64 : 32;  // memory64 / table64
  l.min = r.leb(bits);
  if (l.flags & 0x01) l.max = r.leb(bits);
  return l;
}

bool value_type(uint8_t t) {
  return t == 0x7f || t == 0x7e || t == 0x7d || t == 0x7c || t == 0x7b || t == 0x70 || t == 0x6f;
}

// Skips one import's description; false when it imports a memory or is not understood.
bool skip_import_without_memory(Reader& r) {
  switch (r.byte()) {
    case 0x00:  // function: type index
      (void)r.u32();
      return r.ok;
    case 0x01:  // table: reference type, limits
      if (!value_type(r.byte())) return false;
      (void)limits(r);
      return r.ok;
    case 0x03: {  // global: value type, mutability
      const bool known = value_type(r.byte());
      return known && r.byte() <= 1 && r.ok;
    }
    case 0x04:  // tag: attribute, type index
      (void)r.byte();
      (void)r.u32();
      return r.ok;
    default:  // 0x02, a memory, or something newer
      return false;
  }
}

struct Section {
  uint8_t id;
  std::string_view content;
};

// The module's sections; nullopt when it is not a well-formed binary.
std::optional<std::vector<Section>> sections_of(std::string_view wasm) {
  if (wasm.substr(0, kHeader.size()) != kHeader) return std::nullopt;
  Reader r{wasm, kHeader.size()};
  std::vector<Section> sections;
  while (r.ok && !r.done()) {
    const uint8_t id = r.byte();
    const std::string_view content = r.bytes(r.u32());
    sections.push_back({id, content});
  }
  if (!r.ok) return std::nullopt;
  return sections;
}

}  // namespace

std::map<uint32_t, std::string> exported_functions(std::string_view wasm) {
  std::map<uint32_t, std::string> names;
  auto sections = sections_of(wasm);
  if (!sections) return names;
  for (const auto& s : *sections) {
    if (s.id != kExportSection) continue;
    Reader r{s.content};
    const uint32_t count = r.u32();
    for (uint32_t i = 0; r.ok && i < count; ++i) {
      const std::string_view name = r.bytes(r.u32());
      const uint8_t kind = r.byte();
      const uint32_t index = r.u32();
      if (r.ok && kind == 0x00) names.emplace(index, std::string(name));
    }
    if (!r.ok) return {};
  }
  return names;
}

std::optional<ImportedMemory> import_own_memory(std::string_view wasm,
                                                std::string_view import_module,
                                                std::string_view import_name) {
  auto all = sections_of(wasm);
  if (!all) return std::nullopt;
  const std::vector<Section>& sections = *all;
  const Section* imports = nullptr;
  const Section* memories = nullptr;
  for (const auto& s : sections) {
    if (s.id == kImportSection && !imports)
      imports = &s;
    else if (s.id == kMemorySection && !memories)
      memories = &s;
    else if (s.id == kImportSection || s.id == kMemorySection)
      return std::nullopt;
  }
  if (!memories) return std::nullopt;

  Reader mem{memories->content};
  if (mem.u32() != 1) return std::nullopt;
  const Limits own = limits(mem);
  if (!mem.ok || !mem.done() || own.flags > 1) return std::nullopt;  // shared or 64-bit
  ImportedMemory result;
  result.initial_pages = static_cast<uint32_t>(own.min);
  if (own.max) result.maximum_pages = static_cast<uint32_t>(*own.max);

  uint32_t count = 0;
  std::string_view entries;
  if (imports) {
    Reader imp{imports->content};
    count = imp.u32();
    const size_t first = imp.at;
    for (uint32_t i = 0; i < count; ++i) {
      imp.name();
      imp.name();
      if (!skip_import_without_memory(imp)) return std::nullopt;
    }
    if (!imp.ok || !imp.done()) return std::nullopt;
    entries = imports->content.substr(first);
  }
  std::string import_section;
  put_u32(import_section, count + 1);
  import_section.append(entries);
  put_name(import_section, import_module);
  put_name(import_section, import_name);
  import_section.push_back(0x02);
  put_u32(import_section, own.flags);
  put_u32(import_section, result.initial_pages);
  if (own.max) put_u32(import_section, *result.maximum_pages);

  // The import section goes where it was, or else after the type section.
  std::string& out = result.module;
  out.reserve(wasm.size() + import_section.size() + 8);
  out.append(kHeader);
  bool placed = false;
  for (const auto& s : sections) {
    if (!placed &&
        (s.id == kImportSection || (!imports && s.id != kCustomSection && s.id != kTypeSection))) {
      put_section(out, kImportSection, import_section);
      placed = true;
      if (s.id == kImportSection) continue;
    }
    if (s.id != kMemorySection) put_section(out, s.id, s.content);
  }
  if (!placed) put_section(out, kImportSection, import_section);
  return result;
}

}  // namespace nex::runtime::wasm_binary
