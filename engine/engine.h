/* engine.h — the engine's long-lived parts, built once by main.c and handed to every
 * subsystem. No globals: everything a handler needs hangs off struct engine. */
#pragma once

#include <pthread.h>
#include <stdbool.h>

#include "config.h"
#include "net/net.h"
#include "runtime/runtime.h"
#include "store/store.h"

struct ssl_ctx_st; /* OpenSSL's SSL_CTX (net/tls.h) */

struct lock_table;
struct pool;
struct conn_pool;

#define ENGINE_RUNTIMES 2 /* runc, runsc */

/* The rows of other nodes as last read to relay to them (cluster/node.c node_owner). */
#define NODE_ROWS_CACHED 16
struct node_rows {
        pthread_mutex_t lock;
        struct node_rec rows[NODE_ROWS_CACHED];
        int64_t read_at[NODE_ROWS_CACHED]; /* mono ms; 0: an empty slot */
};

struct engine {
        struct config cfg;
        struct store *store;
        struct runtime *runtime;  /* the default for new sandboxes (--runtime) */
        /* Every runtime this engine can run sandboxes on: the default and, when its program
         * is installed, the other kind (a sandbox records its kind: sandbox_runtime). */
        struct runtime *runtimes[ENGINE_RUNTIMES];
        struct net *net;
        struct lock_table *locks;
        struct pool *pool; /* the warm pool (sandbox/pool.h), NULL when off */
        struct disk *disk; /* the sandboxes' disk volume (disk/disk.h) */
        char sandboxes_dir[4096]; /* STATE/sandboxes */
        char run_sandboxes_dir[4096]; /* RUN/sandboxes */
        int64_t lease_renew_at;   /* mono ms: the reaper renews this node's lease then (cluster/node.h) */
        pthread_t reaper;
        bool reaper_started;
        pthread_t drainer;        /* moves paused sandboxes away while this node drains (cluster/drain.h) */
        bool drainer_started;
        volatile bool stopping;
        /* TLS (net/tls.h): the API port's certificate and key (PEM, NULL for plain HTTP), and
         * the client context of requests to other nodes (https:// advertise URLs). */
        char *tls_cert_pem, *tls_key_pem;
        struct ssl_ctx_st *cluster_tls;
        struct conn_pool *node_conns; /* idle kept-alive connections to other nodes (net/conn-pool.h) */
        struct node_rows node_rows;
};
