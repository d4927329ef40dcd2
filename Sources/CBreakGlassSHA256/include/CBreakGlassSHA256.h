#ifndef C_BREAKGLASS_SHA256_H
#define C_BREAKGLASS_SHA256_H

#include <stddef.h>

/// 1 when the one-shot SHA-256 of the BoringSSL that swift-crypto links in is present.
int breakglass_sha256_available(void);

/// SHA-256 of `count` bytes into the 32 bytes at `digest`; returns 0 (and writes nothing) when
/// breakglass_sha256_available() is 0.
int breakglass_sha256(const void *bytes, size_t count, void *digest);

#endif
