// SHA-256 in one call, for the Merkle tree's millions of short messages (a leaf is one record, a
// node 65 bytes). It is swift-crypto's own SHA-256: the BoringSSL copy that swift-crypto compiles
// in on Linux, whose one-shot function it exports under its usual prefix. Calling it directly skips
// the per-message costs of the Swift `SHA256` wrapper (a heap context, a copy and wipe of that
// context, run-time exclusivity checks), which cost as much as the hashing itself for messages
// this short.
//
// The reference is weak: if a swift-crypto release ever drops or renames the symbol, it is null,
// breakglass_sha256_available() says 0 and TreeHash uses the Swift API. Elsewhere than Linux
// swift-crypto uses the system's CryptoKit, so the Swift API is always used there. Nothing hashed
// here is secret, so no state needs wiping.
#include "CBreakGlassSHA256.h"

#include <stdint.h>

#if defined(__linux__)

extern uint8_t *CCryptoBoringSSL_SHA256(const uint8_t *data, size_t length, uint8_t *digest)
    __attribute__((weak));

int breakglass_sha256_available(void) {
    return CCryptoBoringSSL_SHA256 != NULL ? 1 : 0;
}

int breakglass_sha256(const void *bytes, size_t count, void *digest) {
    if (CCryptoBoringSSL_SHA256 == NULL) {
        return 0;
    }
    CCryptoBoringSSL_SHA256((const uint8_t *)bytes, count, (uint8_t *)digest);
    return 1;
}

#else

int breakglass_sha256_available(void) {
    return 0;
}

int breakglass_sha256(const void *bytes, size_t count, void *digest) {
    (void)bytes;
    (void)count;
    (void)digest;
    return 0;
}

#endif
