/* proc-stream.h — one reader of a process's life: the NDJSON stream of POST /processes
 * and of GET /processes/{pid}/stream.
 *
 * Events, in order: start; then the output from the reader's cursor (which starts at the
 * first byte ever written), each read as one stdout/stderr/pty event, with a dropped event
 * wherever the ring discarded bytes the reader had not read; keepalives after
 * NDJSON_KEEPALIVE_MS of silence; and end once the process has ended and every byte held
 * has been sent.
 */
#pragma once

#include <stdbool.h>

#include "http.h"
#include "proc-table.h"

/* Streams p's life to c (p stays the caller's). starter: c is the request that started p;
 * if its client goes away (or the stream fails) before the end and p is not a background
 * process, p's group is terminated (SIGTERM, then SIGKILL). Other streams never affect p.
 * Returns 0 or the -errno of a failed reply. */
int proc_stream_serve(struct http_conn *c, struct proc *p, bool starter);
