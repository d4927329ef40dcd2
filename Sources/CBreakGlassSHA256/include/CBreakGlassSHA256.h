#ifndef C_BREAKGLASS_SHA256_H
#define C_BREAKGLASS_SHA256_H

#include <stddef.h>

/// 1 when OpenSSL's SHA-256 can be used (always, with the low-level API; with EVP, once it is fetched).
int breakglass_sha256_available(void);

/// SHA-256 of `count` bytes into the 32 bytes at `digest`; returns 1, or 0 when the hash could not
/// be computed (then the 32 bytes at `digest` are not a hash and must not be used).
int breakglass_sha256(const void *bytes, size_t count, void *digest);

#endif
