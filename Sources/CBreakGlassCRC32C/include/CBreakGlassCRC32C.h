#ifndef C_BREAKGLASS_CRC32C_H
#define C_BREAKGLASS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has a CRC-32C instruction (SSE 4.2 on x86-64, the CRC extension on AArch64).
int breakglass_crc32c_hardware_available(void);

/// Continues a CRC-32C (reflected, no final XOR) over `count` bytes with the CPU's instruction.
/// Call only when breakglass_crc32c_hardware_available() returned 1.
uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count);

#endif
