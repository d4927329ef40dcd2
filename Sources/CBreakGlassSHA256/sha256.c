// SHA-256 in one call, for the Merkle tree's millions of short messages (a leaf is one record, a
// node 65 bytes), through OpenSSL's public libcrypto API.
//
// The low-level SHA256_Init/Update/Final functions come first: OpenSSL 3.0 deprecated them in
// favour of EVP, but they are public and present in every 3.x release, and for messages this short
// they cost two thirds of EVP's per-message dispatch (112 ns against 166 ns for 65 bytes, with a
// reused EVP context; SHA256() itself, 480 ns, fetches the digest on every call). The deprecation
// warning is suppressed for this file only. A libcrypto built without the deprecated API
// (OPENSSL_NO_DEPRECATED_3_0) gets the EVP path instead: one context per thread, reused, and the
// digest fetched once. Nothing hashed here is secret, so no state needs wiping.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "CBreakGlassSHA256.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#if !defined(OPENSSL_NO_DEPRECATED_3_0)

int breakglass_sha256_available(void) {
    return 1;
}

int breakglass_sha256(const void *bytes, size_t count, void *digest) {
    SHA256_CTX context;
    if (SHA256_Init(&context) != 1 || SHA256_Update(&context, bytes, count) != 1
        || SHA256_Final((unsigned char *)digest, &context) != 1) {
        return 0;
    }
    return 1;
}

#else

#include <pthread.h>

static EVP_MD *sha256_digest;
static pthread_key_t context_key;
static int context_key_made;
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;

static void free_context(void *context) {
    EVP_MD_CTX_free((EVP_MD_CTX *)context);
}

static void setup(void) {
    context_key_made = pthread_key_create(&context_key, free_context) == 0;
    sha256_digest = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

int breakglass_sha256_available(void) {
    pthread_once(&setup_once, setup);
    return sha256_digest != NULL && context_key_made ? 1 : 0;
}

int breakglass_sha256(const void *bytes, size_t count, void *digest) {
    if (!breakglass_sha256_available()) {
        return 0;
    }
    EVP_MD_CTX *context = pthread_getspecific(context_key);
    if (context == NULL) {
        context = EVP_MD_CTX_new();
        if (context == NULL) {
            return 0;
        }
        if (pthread_setspecific(context_key, context) != 0) {
            EVP_MD_CTX_free(context);
            return 0;
        }
    }
    unsigned int length = 0;
    if (EVP_DigestInit_ex2(context, sha256_digest, NULL) != 1 || EVP_DigestUpdate(context, bytes, count) != 1
        || EVP_DigestFinal_ex(context, (unsigned char *)digest, &length) != 1 || length != 32) {
        return 0;
    }
    return 1;
}

#endif
