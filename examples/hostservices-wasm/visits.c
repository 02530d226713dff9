// A WebAssembly function that counts how often each subject was called, in the workload's own
// key-value bucket (nex host services; see docs/host-services.md).
//
//   clang --target=wasm32-wasi -O2 -I ../../sdk/wasm -o visits.wasm visits.c
//   nex devrun ./visits.wasm --trigger_subject 'visits.>'
//   nats req visits.home ''        # visits.home: 1, then 2, ...
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nex.h"

int main(int argc, char** argv) {
  const char* subject = argc > 1 ? argv[1] : "unknown";
  char count[32] = "0";
  int32_t rc = nex_kv_get(subject, (uint32_t)strlen(subject));
  if (rc > 0 && rc < (int32_t)sizeof count)
    count[nex_result(count, sizeof count - 1)] = 0;
  else if (rc < 0 && rc != -404) {  // -404: never counted yet
    char why[256] = "";
    why[nex_result(why, sizeof why - 1)] = 0;
    fprintf(stderr, "kv_get failed (%d): %s\n", (int)rc, why);
    return 1;
  }
  char next[32];
  int len = snprintf(next, sizeof next, "%ld", atol(count) + 1);
  if (nex_kv_set(subject, (uint32_t)strlen(subject), next, (uint32_t)len) < 0) {
    fprintf(stderr, "kv_set failed\n");
    return 1;
  }
  printf("%s: %s", subject, next);
  return 0;
}
