#ifndef BREAKGLASS_CFUZZDRIVER_H
#define BREAKGLASS_CFUZZDRIVER_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's driver (compiler-rt, LLVM 11 and later), linked by -sanitize=fuzzer. The targets call it
   from their own entry point: SwiftPM names an executable's `main` after its module on Linux, so
   libFuzzer's own `main` is never linked. */
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
