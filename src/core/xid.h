// xid-style identifiers (20 lowercase base32hex characters, sortable by creation time), the
// shape Nex uses for workload ids (e.g. "cmji29n52omrb71g07a0").
#pragma once

#include <string>

namespace nex {

std::string next_xid();

}  // namespace nex
