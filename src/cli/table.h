// Tables in the box-drawing style of Nex's output (`nex node ls`), sized to their content.
// Cells are shown with control characters escaped (core/terminal_text.h).
#pragma once

#include <string>
#include <vector>

namespace nex::cli {

std::string render_table(const std::string& title, const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows);

// "33545884" -> "33,545,884", as the seeds print memory.
std::string with_thousands(long long value);

}  // namespace nex::cli
