// A node's name is what durable commands address it by (the NEX_NODES record under that name
// says which node id signs its results), so two live nodes must never share one: the second
// would replace the first's record, and the first's results would no longer be believed.
// Before it serves anything, a starting node checks that no live node holds its name.
#pragma once

#include <chrono>
#include <string>

#include "core/error.h"
#include "nats/connection.h"

namespace nex::node {

// OK when no live node other than `id` holds `name`. A node holds a name when it answers
// $NEX.PING with that name tag (nodes on this NATS), or when it holds the name's NEX_NODES record
// (in JetStream domain `js_domain`) and answers $NEX.PING.{its id}. A record left by a node that
// is gone (killed, or moved to another state directory) does not hold the name.
// kAlreadyExists, naming the node that holds it, otherwise.
Status check_name_free(const nats::Connection& conn, const std::string& name, const std::string& id,
                       const std::string& js_domain);

}  // namespace nex::node
