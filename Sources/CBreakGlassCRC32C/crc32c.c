// CRC-32C with the CPU's own instruction. Only this file is built for the instruction set that
// has it; the Swift side asks breakglass_crc32c_hardware_available() first and otherwise uses its
// table-driven code, so the binary still runs on a CPU without it. Each architecture gives the
// two steps (8 bytes, 1 byte) and its check; the loops over them are written once, below.
#include "CBreakGlassCRC32C.h"

#include <string.h>

#if defined(__x86_64__)

#include <nmmintrin.h>

#define BREAKGLASS_CRC_TARGET __attribute__((target("sse4.2")))

int breakglass_crc32c_hardware_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

BREAKGLASS_CRC_TARGET static inline uint32_t step8(uint32_t crc, uint64_t word) {
    return (uint32_t)_mm_crc32_u64(crc, word);
}

BREAKGLASS_CRC_TARGET static inline uint32_t step1(uint32_t crc, unsigned char byte) {
    return _mm_crc32_u8(crc, byte);
}

#define BREAKGLASS_CRC_HARDWARE 1

#elif defined(__aarch64__) && defined(__linux__)

#include <arm_acle.h>
#include <sys/auxv.h>

#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

#define BREAKGLASS_CRC_TARGET __attribute__((target("crc")))

int breakglass_crc32c_hardware_available(void) {
    return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0 ? 1 : 0;
}

BREAKGLASS_CRC_TARGET static inline uint32_t step8(uint32_t crc, uint64_t word) {
    return __crc32cd(crc, word);
}

BREAKGLASS_CRC_TARGET static inline uint32_t step1(uint32_t crc, unsigned char byte) {
    return __crc32cb(crc, byte);
}

#define BREAKGLASS_CRC_HARDWARE 1

#endif

#if defined(BREAKGLASS_CRC_HARDWARE)

BREAKGLASS_CRC_TARGET
uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *next = bytes;
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, next, 8);
        crc = step8(crc, word);
        next += 8;
        count -= 8;
    }
    while (count > 0) {
        crc = step1(crc, *next);
        next += 1;
        count -= 1;
    }
    return crc;
}

BREAKGLASS_CRC_TARGET
void breakglass_crc32c_hardware_update3(uint32_t crcs[3], const void *a, const void *b, const void *c, size_t count) {
    const unsigned char *first = a, *second = b, *third = c;
    uint32_t one = crcs[0], two = crcs[1], three = crcs[2];
    size_t offset = 0;
    for (; offset + 8 <= count; offset += 8) {
        uint64_t x, y, z;
        memcpy(&x, first + offset, 8);
        memcpy(&y, second + offset, 8);
        memcpy(&z, third + offset, 8);
        one = step8(one, x);
        two = step8(two, y);
        three = step8(three, z);
    }
    crcs[0] = breakglass_crc32c_hardware_update(one, first + offset, count - offset);
    crcs[1] = breakglass_crc32c_hardware_update(two, second + offset, count - offset);
    crcs[2] = breakglass_crc32c_hardware_update(three, third + offset, count - offset);
}

#else

int breakglass_crc32c_hardware_available(void) { return 0; }

uint32_t breakglass_crc32c_hardware_update(uint32_t crc, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return crc;
}

void breakglass_crc32c_hardware_update3(uint32_t crcs[3], const void *a, const void *b, const void *c, size_t count) {
    (void)crcs;
    (void)a;
    (void)b;
    (void)c;
    (void)count;
}

#endif
