#include "core/sodium.h"

#include <sodium.h>

#include <cstdlib>

namespace nex {

void ensure_sodium() {
  static const int ready = sodium_init();
  if (ready < 0) std::abort();  // no usable randomness source: nothing secure can be done
}

}  // namespace nex
