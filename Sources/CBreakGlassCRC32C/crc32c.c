// CRC-32C with the CPU's own instruction. Only this file is built for the instruction set that
// has it; the Swift side asks breakglass_crc32c_hardware_available() first and otherwise uses its
// table-driven code, so the binary still runs on a CPU without it.
#include "CBreakGlassCRC32C.h"

#include <string.h>

#if defined(__x86_64__)

#include <nmmintrin.h>

int breakglass_crc32c_hardware_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2")))
uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *next = bytes;
    uint64_t value = crc;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, next, 8);
        value = _mm_crc32_u64(value, word);
        next += 8;
        count -= 8;
    }
    uint32_t result = (uint32_t)value;
    while (count > 0) {
        result = _mm_crc32_u8(result, *next);
        next += 1;
        count -= 1;
    }
    return result;
}

#elif defined(__aarch64__) && defined(__linux__)

#include <arm_acle.h>
#include <sys/auxv.h>

#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

int breakglass_crc32c_hardware_available(void) {
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0 ? 1 : 0;
}

__attribute__((target("crc")))
uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *next = bytes;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, next, 8);
        crc = __crc32cd(crc, word);
        next += 8;
        count -= 8;
    }
    while (count > 0) {
        crc = __crc32cb(crc, *next);
        next += 1;
        count -= 1;
    }
    return crc;
}

#else

int breakglass_crc32c_hardware_available(void) { return 0; }

uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return crc;
}

#endif
