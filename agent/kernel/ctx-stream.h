/* ctx-stream.h — the event stream of one POST /execute: the NDJSON response, written by the
 * handler's thread (start, end), by the backend through a kernel_sink (output, results,
 * errors) and by a keepalive thread of its own, all under one lock.
 *
 * The 200 goes out lazily, with the first event or keepalive, so that an execution that
 * fails before anything was sent (its interpreter does not start) can still be answered
 * with an error status. The stream also gives the backend its "hang-up" fd (kernel_sink's
 * watch_fd): one end of a socketpair whose other end is shut down when the client goes
 * away or when contexts.c cancels the execution (a restart or a removal of its context), so
 * that both look alike to a backend: an interrupt.
 */
#pragma once

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../http.h"
#include "kernel.h"

#define CTX_OUTPUT_CAP (32ULL * 1024 * 1024) /* stdout + stderr text sent per execution */

struct ctx_stream {
        struct http_conn *conn;
        pthread_mutex_t lock;
        bool begun;     /* the 200 head went out */
        bool answered;  /* a complete non-stream answer went out instead */
        bool ended;     /* the chunked body was ended */
        bool gone;      /* the client went away or a write to it failed */
        bool cancelled; /* ctx_stream_cancel() */
        int64_t last_write_ms; /* monotonic */
        uint64_t output_bytes; /* text of stdout/stderr events sent */
        uint64_t dropped_bytes;
        bool error_sent;       /* an error event went out */
        int watch[2];          /* watch[0]: the backend's watch_fd; watch[1] shut down to signal */
        int stop_fd;           /* eventfd: ends the keepalive thread */
        pthread_t ticker;
        bool ticker_running;
};

/* Sets s up for conn and starts its keepalive thread. Returns 0 or -errno. */
int ctx_stream_open(struct ctx_stream *s, struct http_conn *conn);

/* Writes ev (borrowed; "ts" added), beginning the response if needed. Returns 0, or
 * -EPIPE once the client is gone (the event is then dropped). */
int ctx_stream_event(struct ctx_stream *s, json_t *ev);

/* Builds an event from a json_pack format and writes it; the same returns. */
int ctx_stream_eventf(struct ctx_stream *s, const char *fmt, ...);

/* Writes an error event {"type":"error","name","value","traceback":[]}. */
int ctx_stream_error(struct ctx_stream *s, const char *name, const char *value);

/* The sink to hand a backend for one execution: applies the output cap and reports a
 * gone client or a cancellation as a failed event. */
struct kernel_sink ctx_stream_sink(struct ctx_stream *s);

/* Makes the backend interrupt the running execution (shuts down the watch socket), and
 * tells waiters that the execution is cancelled. Callable from any thread. */
void ctx_stream_cancel(struct ctx_stream *s);

/* Whether the client went away. */
bool ctx_stream_gone(struct ctx_stream *s);

/* Answers with a JSON error if nothing has been sent yet (returns 1), else returns 0 and
 * the caller reports the failure as events. */
int ctx_stream_respond_error(struct ctx_stream *s, int status, const char *code, const char *message);

/* Writes {"type":"dropped"} if output was dropped, then end {execution_count (< 0: null),
 * status, timed_out}, and ends the response. */
int ctx_stream_end(struct ctx_stream *s, int64_t execution_count, const char *status, bool timed_out);

/* Stops the keepalive thread and frees what s holds; ends an open response (without an
 * end event) so that the client is not left waiting. Accepts a zeroed struct. */
void ctx_stream_close(struct ctx_stream *s);
