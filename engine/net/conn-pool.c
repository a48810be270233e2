/* conn-pool.c — see conn-pool.h. A fixed array of CONN_POOL_PER_PEER × CONN_POOL_PEERS
 * slots: a few dozen entries, walked under the lock (microseconds beside a round trip). */
#include "net/conn-pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "timeutil.h"

#define SLOTS (CONN_POOL_PER_PEER * CONN_POOL_PEERS)

struct slot {
        int fd; /* -1: free */
        SSL *ssl;
        int64_t since; /* mono ms it went idle */
        char key[CONN_POOL_KEY_MAX];
};

struct conn_pool {
        pthread_mutex_t lock;
        long idle_ms;
        struct slot slots[SLOTS];
};

static void conn_close(int fd, SSL *ssl) {
        SSL_free(ssl); /* no close_notify: the peer reads the end of the connection as one */
        close(fd);
}

int conn_pool_new(long idle_ms, struct conn_pool **ret) {
        struct conn_pool *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        p->idle_ms = idle_ms;
        for (size_t i = 0; i < SLOTS; i++)
                p->slots[i].fd = -1;
        *ret = p;
        return 0;
}

void conn_pool_free(struct conn_pool *p) {
        if (!p)
                return;
        for (size_t i = 0; i < SLOTS; i++)
                if (p->slots[i].fd >= 0)
                        conn_close(p->slots[i].fd, p->slots[i].ssl);
        pthread_mutex_destroy(&p->lock);
        free(p);
}

/* Whether an idle connection is still usable: nothing to read (the peer sent no data, no
 * end, no reset). Over TLS, records that carry no data (TLS 1.3 session tickets, sent after
 * the handshake) are taken in passing: only a data byte or an end makes it unusable. */
static bool still_open(int fd, SSL *ssl) {
        char c;
        ssize_t k;

        if (!ssl) {
                k = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                return k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        }
        ERR_clear_error();
        k = SSL_peek(ssl, &c, 1);
        if (k > 0)
                return false;
        bool open = SSL_get_error(ssl, (int) k) == SSL_ERROR_WANT_READ;
        ERR_clear_error();
        return open;
}

/* Removes and returns (in *ret) the idle entry of key that went idle last, closing the
 * entries past their idle time on the way; false when key has none. Under the lock. */
static bool take_locked(struct conn_pool *p, const char *key, struct slot *ret) {
        int64_t now = mono_ms();
        struct slot *best = NULL;

        for (size_t i = 0; i < SLOTS; i++) {
                struct slot *s = &p->slots[i];
                if (s->fd < 0)
                        continue;
                if (now - s->since > p->idle_ms) {
                        conn_close(s->fd, s->ssl);
                        s->fd = -1;
                        continue;
                }
                if (strcmp(s->key, key) == 0 && (!best || s->since > best->since))
                        best = s;
        }
        if (!best)
                return false;
        *ret = *best;
        best->fd = -1;
        best->ssl = NULL;
        return true;
}

int conn_pool_take(struct conn_pool *p, const char *key, SSL **ret_ssl) {
        struct slot s;
        bool found;

        for (;;) {
                pthread_mutex_lock(&p->lock);
                found = take_locked(p, key, &s);
                pthread_mutex_unlock(&p->lock);
                if (!found)
                        return -ENOENT;
                if (still_open(s.fd, s.ssl))
                        break;
                conn_close(s.fd, s.ssl);
        }
        *ret_ssl = s.ssl;
        return s.fd;
}

void conn_pool_put(struct conn_pool *p, const char *key, int fd, SSL *ssl) {
        int64_t now = mono_ms();
        struct slot *free_slot = NULL;
        unsigned same = 0, peers = 0;
        bool peer_known = false;

        if (strlen(key) >= CONN_POOL_KEY_MAX) {
                conn_close(fd, ssl);
                return;
        }
        pthread_mutex_lock(&p->lock);
        for (size_t i = 0; i < SLOTS; i++) {
                struct slot *s = &p->slots[i];
                /* Past its idle time: closed here too, or it would hold its place (and count
                 * against its peer's bound) until the next take. */
                if (s->fd >= 0 && now - s->since > p->idle_ms) {
                        conn_close(s->fd, s->ssl);
                        s->fd = -1;
                        s->ssl = NULL;
                }
                if (s->fd < 0) {
                        free_slot = free_slot ? free_slot : s;
                        continue;
                }
                if (strcmp(s->key, key) == 0) {
                        same++;
                        peer_known = true;
                        continue;
                }
                /* Count each other peer once: at its first slot. */
                bool first = true;
                for (size_t j = 0; j < i && first; j++)
                        first = p->slots[j].fd < 0 || strcmp(p->slots[j].key, s->key) != 0;
                peers += first;
        }
        if (!free_slot || same >= CONN_POOL_PER_PEER || (!peer_known && peers >= CONN_POOL_PEERS)) {
                pthread_mutex_unlock(&p->lock);
                conn_close(fd, ssl);
                return;
        }
        free_slot->fd = fd;
        free_slot->ssl = ssl;
        free_slot->since = now;
        snprintf(free_slot->key, sizeof(free_slot->key), "%s", key);
        pthread_mutex_unlock(&p->lock);
}
