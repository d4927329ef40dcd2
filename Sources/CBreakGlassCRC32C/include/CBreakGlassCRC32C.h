#ifndef C_BREAKGLASS_CRC32C_H
#define C_BREAKGLASS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has a CRC-32C instruction (SSE 4.2 on x86-64, the CRC extension on AArch64).
int breakglass_crc32c_hardware_available(void);

/// Continues a CRC-32C (reflected, no final XOR) over `count` bytes with the CPU's instruction.
/// Call only when breakglass_crc32c_hardware_available() returned 1.
uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count);

/// Continues three CRC-32Cs at once over `count` bytes of each of `a`, `b` and `c` (`crcs[0]` over
/// `a`, and so on). The three chains are independent, so the instruction's latency is hidden.
/// Call only when breakglass_crc32c_hardware_available() returned 1.
void breakglass_crc32c_hardware_update3(uint32_t crcs[3], const void *a, const void *b, const void *c, size_t count);

#endif
