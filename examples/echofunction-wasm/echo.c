// The seeds' WebAssembly echo function as a WASI command, in C: argv[1] is the subject the
// trigger arrived on, stdin is the payload, stdout is the reply ("hello" on wasm.echo answers
// "hellowasm.echo", as in the seeds).
//   clang --target=wasm32-wasi -O2 -o echo.wasm echo.c
//   nex devrun ./echo.wasm --trigger_subject=wasm.echo
#include <stdio.h>
#include <unistd.h>

int main(int argc, char** argv) {
  char buf[65536];
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  if (argc > 1) fputs(argv[1], stdout);
  return 0;
}
