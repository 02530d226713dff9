#include "cli/table.h"

#include <algorithm>

#include "core/terminal_text.h"

namespace nex::cli {
namespace {

// Display width: count UTF-8 code points, not bytes.
size_t width(const std::string& s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string repeat(const char* piece, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += piece;
  return out;
}

}  // namespace

std::string render_table(const std::string& title, const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& cells) {
  // Cells hold what nodes answered (names, tags, commands' arguments): one line each, inert.
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : cells) {
    rows.emplace_back();
    for (const auto& cell : r) rows.back().push_back(terminal_safe(cell));
  }
  std::vector<size_t> w(header.size());
  for (size_t c = 0; c < header.size(); ++c) {
    w[c] = width(header[c]);
    for (const auto& r : rows) w[c] = std::max(w[c], c < r.size() ? width(r[c]) : 0);
  }
  size_t inner = header.size() * 3 - 1;
  for (size_t x : w) inner += x;
  inner = std::max(inner, width(title) + 2);
  auto line = [&](const char* left, const char* mid, const char* right) {
    std::string out = left;
    for (size_t c = 0; c < w.size(); ++c)
      out += repeat("─", w[c] + 2) + (c + 1 < w.size() ? mid : "");
    return out + right + "\n";
  };
  auto row = [&](const std::vector<std::string>& cells) {
    std::string out = "│";
    for (size_t c = 0; c < w.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      out += " " + cell + std::string(w[c] - width(cell), ' ') + " │";
    }
    return out + "\n";
  };
  // Widen the last column if the title needs more room than the columns give.
  size_t cols = header.size() * 3 - 1;
  for (size_t x : w) cols += x;
  if (inner > cols) w.back() += inner - cols;
  std::string out = "╭" + repeat("─", inner) + "╮\n";
  const size_t pad = inner - width(title);
  out += "│" + std::string(pad / 2, ' ') + title + std::string(pad - pad / 2, ' ') + "│\n";
  out += line("├", "┬", "┤");
  out += row(header);
  out += line("├", "┼", "┤");
  for (const auto& r : rows) out += row(r);
  out += line("╰", "┴", "╯");
  return out;
}

std::string with_thousands(long long value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

}  // namespace nex::cli
