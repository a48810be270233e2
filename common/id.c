/* id.c — see id.h. Rejection sampling keeps every character equally likely. */
#include "id.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"

static const char lower_alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

int random_string(char *out, size_t n, const char *alphabet) {
        size_t k = strlen(alphabet), i = 0;
        unsigned limit = 256 - 256 % k;
        unsigned char pool[64];

        while (i < n) {
                ssize_t got = getrandom(pool, sizeof(pool), 0);
                if (got < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (ssize_t j = 0; j < got && i < n; j++)
                        if (pool[j] < limit)
                                out[i++] = alphabet[pool[j] % k];
        }
        return 0;
}

static bool all_in(const char *s, size_t n, const char *alphabet) {
        for (size_t i = 0; i < n; i++)
                if (!s[i] || !strchr(alphabet, s[i]))
                        return false;
        return true;
}

int sandbox_id_new(char ret[SANDBOX_ID_LEN + 1]) {
        size_t p = strlen(SANDBOX_ID_PREFIX);
        int r;

        memcpy(ret, SANDBOX_ID_PREFIX, p);
        r = random_string(ret + p, SANDBOX_ID_RANDOM_LEN, lower_alnum);
        if (r < 0)
                return r;
        ret[SANDBOX_ID_LEN] = 0;
        return 0;
}

bool sandbox_id_valid(const char *s) {
        size_t p = strlen(SANDBOX_ID_PREFIX);

        return s && strlen(s) == SANDBOX_ID_LEN && strncmp(s, SANDBOX_ID_PREFIX, p) == 0 &&
               all_in(s + p, SANDBOX_ID_RANDOM_LEN, lower_alnum);
}

int api_key_new(char ret[API_KEY_LEN + 1]) {
        size_t p = strlen(API_KEY_PREFIX);
        int r;

        memcpy(ret, API_KEY_PREFIX, p);
        r = random_string(ret + p, API_KEY_ID_LEN + API_KEY_SECRET_LEN, alnum);
        if (r < 0)
                return r;
        ret[API_KEY_LEN] = 0;
        return 0;
}

bool api_key_valid(const char *s) {
        size_t p = strlen(API_KEY_PREFIX);

        return s && strlen(s) == API_KEY_LEN && strncmp(s, API_KEY_PREFIX, p) == 0 &&
               all_in(s + p, API_KEY_ID_LEN + API_KEY_SECRET_LEN, alnum);
}

int traffic_token_new(char ret[TRAFFIC_TOKEN_LEN + 1]) {
        int r = random_string(ret, TRAFFIC_TOKEN_LEN, alnum);

        if (r < 0)
                return r;
        ret[TRAFFIC_TOKEN_LEN] = 0;
        return 0;
}
