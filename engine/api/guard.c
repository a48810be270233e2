/* guard.c — see guard.h. One record per connection, in a list under one lock: the
 * per-address count walks it (4000 connections at most: a walk costs microseconds, far
 * less than the thread start each accepted connection costs anyway), and so does the
 * watchdog, twice a second.
 *
 * The watchdog may shut down a connection's socket from its own thread because the record
 * lives until libmicrohttpd's MHD_CONNECTION_NOTIFY_CLOSED, which 0.9.75 calls before it
 * closes the fd (MHD_cleanup_connections, and the failed-start path of
 * internal_add_connection); the record is removed under the same lock the watchdog holds
 * while it calls shutdown(), so the fd it shuts down is never one reused by another
 * connection. shutdown() rather than close(): the fd stays libmicrohttpd's to close. */
#include "api/guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "timeutil.h"

#define WATCH_INTERVAL_MS 500
#define REFUSAL_LOG_INTERVAL_MS 10000 /* a flood is logged once per this, not per connection */

struct guarded {
        struct api_guard *guard;
        struct guarded *prev, *next;
        int fd;
        struct in_addr addr;
        int64_t since;      /* when it began waiting for its current request */
        bool reading;       /* its request (head or body) is still arriving */
        bool in_head;       /* ... and the head has not arrived */
        bool authenticated; /* one of its requests had a valid API key */
        bool shut;          /* the watchdog shut it down */
        bool refused;       /* over the per-address cap: answered 503 at its start */
};

struct api_guard {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_t watchdog;
        bool watching, stopping;
        struct guarded *conns; /* admitted connections (refused ones are not listed) */
        unsigned per_address;
        int64_t head_ms, idle_ms;
        int64_t refusal_logged; /* when a refusal was last logged */
        unsigned refusals;      /* refusals since then */
};

/* Whether c has overstayed: see guard.h for the rules. */
static bool overdue(const struct api_guard *g, const struct guarded *c, int64_t now) {
        if (!c->reading || c->shut)
                return false;
        if (!c->authenticated)
                return now - c->since > g->head_ms;
        return c->in_head && now - c->since > g->idle_ms;
}

static void *watchdog_main(void *arg) {
        struct api_guard *g = arg;

        pthread_mutex_lock(&g->lock);
        while (!g->stopping) {
                struct timespec ts;
                int64_t now = mono_ms();

                for (struct guarded *c = g->conns; c; c = c->next)
                        if (overdue(g, c, now)) {
                                char ip[INET_ADDRSTRLEN] = "?";

                                inet_ntop(AF_INET, &c->addr, ip, sizeof(ip));
                                log_debug("closing a connection from %s: no %s within %lld s", ip,
                                          c->authenticated ? "whole request head" : "whole request",
                                          (long long) (c->authenticated ? g->idle_ms : g->head_ms) / 1000);
                                (void) shutdown(c->fd, SHUT_RDWR);
                                c->shut = true;
                        }
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += WATCH_INTERVAL_MS * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                (void) pthread_cond_timedwait(&g->wake, &g->lock, &ts);
        }
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

int api_guard_new(unsigned per_address, int64_t head_timeout_s, int64_t idle_timeout_s, struct api_guard **ret,
                  struct error *e) {
        struct api_guard *g = calloc(1, sizeof(*g));
        pthread_condattr_t ca;
        int r;

        if (!g)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        g->per_address = per_address;
        g->head_ms = head_timeout_s * 1000;
        g->idle_ms = idle_timeout_s * 1000;
        pthread_mutex_init(&g->lock, NULL);
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&g->wake, &ca);
        pthread_condattr_destroy(&ca);
        r = pthread_create(&g->watchdog, NULL, watchdog_main, g);
        if (r != 0) {
                api_guard_free(g);
                return error_set(e, r, ERR_INTERNAL, "cannot start the API's connection watchdog: %s", strerror(r));
        }
        g->watching = true;
        *ret = g;
        return 0;
}

void api_guard_stop(struct api_guard *g) {
        if (!g || !g->watching)
                return;
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_cond_signal(&g->wake);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->watchdog, NULL);
        g->watching = false;
}

void api_guard_free(struct api_guard *g) {
        if (!g)
                return;
        api_guard_stop(g);
        /* The daemon stopped: it notified the close of every connection it had. */
        while (g->conns) {
                struct guarded *c = g->conns;
                g->conns = c->next;
                free(c);
        }
        pthread_cond_destroy(&g->wake);
        pthread_mutex_destroy(&g->lock);
        free(g);
}

/* Answers 503 on fd, which the connection's thread has not read from yet, and shuts it
 * down: the thread then sees end-of-file and closes the connection without serving it.
 * Non-blocking: this runs on libmicrohttpd's accepting thread, and the answer fits any
 * socket buffer. */
static void refuse(int fd, const char *ip, unsigned cap) {
        char body[256], msg[512];
        int n;

        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":\"unavailable\",\"message\":\"%s has %u connections open to the engine, the most "
                 "one address may have (api-connections-per-address)\"}}",
                 ip, cap);
        n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Retry-After: 1\r\nConnection: close\r\n\r\n%s",
                     strlen(body), body);
        if (n > 0 && (size_t) n < sizeof(msg))
                (void) send(fd, msg, (size_t) n, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void) shutdown(fd, SHUT_RDWR);
}

/* Counts conn's peer's connections; with the cap reached, marks c refused. Locked. */
static void admit(struct api_guard *g, struct guarded *c, int64_t now) {
        unsigned same = 0;
        char ip[INET_ADDRSTRLEN] = "?";

        for (struct guarded *o = g->conns; o; o = o->next)
                same += o->addr.s_addr == c->addr.s_addr;
        if (same < g->per_address) {
                c->next = g->conns;
                if (g->conns)
                        g->conns->prev = c;
                g->conns = c;
                return;
        }
        c->refused = true;
        inet_ntop(AF_INET, &c->addr, ip, sizeof(ip));
        refuse(c->fd, ip, g->per_address);
        g->refusals++;
        if (now - g->refusal_logged >= REFUSAL_LOG_INTERVAL_MS) {
                log_info("refused %u API connection(s) in the last %d s; the last from %s, which has %u open "
                         "(api-connections-per-address)",
                         g->refusals, REFUSAL_LOG_INTERVAL_MS / 1000, ip, same);
                g->refusal_logged = now;
                g->refusals = 0;
        }
}

static void started(struct api_guard *g, struct MHD_Connection *conn, void **socket_context) {
        const union MHD_ConnectionInfo *fd = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *addr = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        struct guarded *c = calloc(1, sizeof(*c));
        int64_t now = mono_ms();

        /* Out of memory: the connection goes unguarded rather than refused (the daemon's own
         * inactivity timeout still ends it). */
        if (!c || !fd)
                return free(c);
        *c = (struct guarded){.guard = g, .fd = fd->connect_fd, .since = now, .reading = true, .in_head = true};
        if (addr && addr->client_addr && addr->client_addr->sa_family == AF_INET)
                c->addr = ((const struct sockaddr_in *) addr->client_addr)->sin_addr;
        pthread_mutex_lock(&g->lock);
        admit(g, c, now);
        pthread_mutex_unlock(&g->lock);
        *socket_context = c;
}

static void closed(struct api_guard *g, struct guarded *c) {
        if (!c)
                return;
        pthread_mutex_lock(&g->lock);
        if (!c->refused) {
                if (c->prev)
                        c->prev->next = c->next;
                else
                        g->conns = c->next;
                if (c->next)
                        c->next->prev = c->prev;
        }
        pthread_mutex_unlock(&g->lock);
        free(c);
}

void api_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode toe) {
        struct api_guard *g = cls;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED)
                started(g, conn, socket_context);
        else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
                closed(g, *socket_context);
                *socket_context = NULL;
        }
}

static struct guarded *guarded_of(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *i = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return i ? i->socket_context : NULL;
}

bool api_guard_refused(struct MHD_Connection *conn) {
        struct guarded *c = guarded_of(conn);

        return c && c->refused; /* set before the connection's thread started: no lock needed */
}

/* conn's record, locked; NULL for a connection the guard does not watch. */
static struct guarded *lock_record(struct MHD_Connection *conn) {
        struct guarded *c = guarded_of(conn);

        if (!c || c->refused)
                return NULL;
        pthread_mutex_lock(&c->guard->lock);
        return c;
}

static void unlock_record(struct guarded *c) {
        pthread_mutex_unlock(&c->guard->lock);
}

void api_guard_head(struct MHD_Connection *conn) {
        struct guarded *c = lock_record(conn);

        if (!c)
                return;
        c->in_head = false;
        unlock_record(c);
}

void api_guard_authenticated(struct MHD_Connection *conn) {
        struct guarded *c = lock_record(conn);

        if (!c)
                return;
        c->authenticated = true;
        unlock_record(c);
}

void api_guard_answering(struct MHD_Connection *conn) {
        struct guarded *c = lock_record(conn);

        if (!c)
                return;
        c->reading = false;
        unlock_record(c);
}

void api_guard_completed(struct MHD_Connection *conn) {
        struct guarded *c = lock_record(conn);

        if (!c)
                return;
        c->since = mono_ms();
        c->reading = true;
        c->in_head = true;
        unlock_record(c);
}
