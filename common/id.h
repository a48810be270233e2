/* id.h — random identifiers: sandbox ids and API keys.
 *
 * Sandbox ids are "sbx_" + 20 characters of [a-z0-9] (about 103 bits). API keys are
 * "ai2in_live_" + 8 characters of key id + 32 characters of secret ([A-Za-z0-9]); only the
 * key id and a SHA-256 of the whole key are ever stored.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SANDBOX_ID_PREFIX "sbx_"
/* The same id in a host name ("{port}-sbx-….{domain}"), where "_" is not allowed. */
#define SANDBOX_ID_DNS_PREFIX "sbx-"
#define SANDBOX_ID_RANDOM_LEN 20
#define SANDBOX_ID_LEN (sizeof(SANDBOX_ID_PREFIX) - 1 + SANDBOX_ID_RANDOM_LEN)

#define API_KEY_PREFIX "ai2in_live_"
#define API_KEY_ID_LEN 8
#define API_KEY_SECRET_LEN 32
#define API_KEY_LEN (sizeof(API_KEY_PREFIX) - 1 + API_KEY_ID_LEN + API_KEY_SECRET_LEN)

/* Fills out (n bytes) with characters drawn uniformly from alphabet, using the kernel's
 * CSPRNG. Returns 0 or a negative errno. */
int random_string(char *out, size_t n, const char *alphabet);

/* Writes a fresh sandbox id (SANDBOX_ID_LEN chars + NUL) into ret. */
int sandbox_id_new(char ret[SANDBOX_ID_LEN + 1]);

/* True when s has exactly the shape of a sandbox id. */
bool sandbox_id_valid(const char *s);

/* Writes a fresh API key (API_KEY_LEN chars + NUL) into ret. */
int api_key_new(char ret[API_KEY_LEN + 1]);

/* True when s has the shape of an API key. */
bool api_key_valid(const char *s);

/* A secure sandbox's traffic token: 40 characters of [A-Za-z0-9] (about 238 bits), which
 * every request to its preview URLs must carry. */
#define TRAFFIC_TOKEN_LEN 40

/* Writes a fresh traffic token (TRAFFIC_TOKEN_LEN chars + NUL) into ret. */
int traffic_token_new(char ret[TRAFFIC_TOKEN_LEN + 1]);
