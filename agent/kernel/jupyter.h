/* jupyter.h — the Jupyter messaging protocol (version 5.3) without the sockets: building and
 * signing the messages the agent sends, verifying and parsing the ones it receives, and
 * turning a kernel's IOPub output into run_code events (docs/api.md, "Running code").
 *
 * Nothing here touches ZeroMQ, so the unit tests compile this file whole; python.c moves the
 * frames. A message on the wire is a multipart ZeroMQ message:
 *
 *   [routing identities or an IOPub topic…] "<IDS|MSG>" signature header parent_header
 *   metadata content [binary buffers…]
 *
 * where the signature is the hex HMAC-SHA256, keyed with the connection key, of the four JSON
 * frames in that order.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#define JUPYTER_PROTOCOL_VERSION "5.3"
#define JUPYTER_DELIMITER "<IDS|MSG>"
#define JUPYTER_ID_LEN 36        /* a UUID in text: 8-4-4-4-12 hex digits */
#define JUPYTER_KEY_MAX 256      /* longest connection key accepted */
#define JUPYTER_SIGNATURE_LEN 64 /* HMAC-SHA256 in hex */

/* Frames of a message from its delimiter on: the delimiter, the signature and the four JSON
 * frames. */
enum {
        JUPYTER_FRAME_DELIMITER,
        JUPYTER_FRAME_SIGNATURE,
        JUPYTER_FRAME_HEADER,
        JUPYTER_FRAME_PARENT,
        JUPYTER_FRAME_METADATA,
        JUPYTER_FRAME_CONTENT,
        JUPYTER_FRAMES,
};

/* One client of one kernel: the session id stamped on every message it sends and the key
 * that signs them. */
struct jupyter_session {
        char id[JUPYTER_ID_LEN + 1];
        char key[JUPYTER_KEY_MAX + 1]; /* the key's text; its bytes are the HMAC key */
        size_t key_len;
};

/* Sets s up with a fresh session id and key (a NUL-terminated string, at most
 * JUPYTER_KEY_MAX bytes; empty means unsigned messages, which the agent never uses).
 * Returns 0, -EINVAL for a key too long, or -errno if no random bytes could be had. */
int jupyter_session_init(struct jupyter_session *s, const char *key);

/* Writes a random (version 4) UUID in text into ret. Returns 0 or -errno from getrandom. */
int jupyter_uuid4(char ret[JUPYTER_ID_LEN + 1]);

/* Writes the current UTC time as ISO 8601 with microseconds ("2026-01-31T12:00:00.123456Z"). */
void jupyter_date_now(char ret[32]);

/* Computes the hex HMAC-SHA256 of the n frames with key (key_len bytes) into ret. */
void jupyter_sign(const char *key, size_t key_len, const struct iovec *frames, size_t n,
                  char ret[JUPYTER_SIGNATURE_LEN + 1]);

/* A message built to be sent: its id, and its frames from the delimiter on (frames point
 * into the struct and into json, which it owns). */
struct jupyter_outgoing {
        char msg_id[JUPYTER_ID_LEN + 1];
        char signature[JUPYTER_SIGNATURE_LEN + 1];
        char *json[4]; /* header, parent_header, metadata, content as compact JSON text */
        struct iovec frames[JUPYTER_FRAMES];
};

/* Builds a signed request of msg_type with content (borrowed; NULL means {}), an empty
 * parent header and empty metadata. Returns 0 or -ENOMEM/-errno; on failure ret is left
 * released. */
int jupyter_build(const struct jupyter_session *s, const char *msg_type, json_t *content,
                  struct jupyter_outgoing *ret);

/* Frees what jupyter_build() allocated. Accepts a zeroed struct. */
void jupyter_outgoing_done(struct jupyter_outgoing *m);

/* A stream message whose content frame is larger than this is not loaded whole with jansson
 * (which would hold the text two or three times over): its text is decoded from the frame
 * piece by piece when it is turned into events. */
#ifndef JUPYTER_LAZY_STREAM_MIN /* the fuzzer's build lowers both, to reach their code with small inputs */
#define JUPYTER_LAZY_STREAM_MIN (1024 * 1024)
#endif

/* A received message, parsed. The parts are JSON objects, except that content is NULL for a
 * large stream message (see above); the strings point into them. */
struct jupyter_message {
        json_t *header;
        json_t *parent_header;
        json_t *metadata;
        json_t *content;
        struct iovec content_raw;  /* the content frame as received (borrowed from the frames) */
        const char *msg_type;      /* header.msg_type, never NULL */
        const char *parent_msg_id; /* parent_header.msg_id, NULL if it has none */
};

/* Parses one received multipart message given as all of its n frames: the frames before the
 * delimiter (routing identities, an IOPub topic) and after the content (binary buffers) are
 * ignored. The signature must match (compared in constant time). Frames that are not valid
 * UTF-8 are repaired (U+FFFD) before parsing. Returns 0 with ret filled (release with
 * jupyter_message_done; the frames must stay valid until then), -EBADMSG when the message is
 * malformed, -EPERM when its signature is wrong; ret is untouched on failure. */
int jupyter_parse(const struct jupyter_session *s, const struct iovec *frames, size_t n,
                  struct jupyter_message *ret);

/* Releases a parsed message. Accepts a zeroed struct. */
void jupyter_message_done(struct jupyter_message *m);

/* The longest text one stdout/stderr event carries: longer stream output is split, on
 * character boundaries, into several events. */
#ifndef JUPYTER_STREAM_EVENT_MAX
#define JUPYTER_STREAM_EVENT_MAX (1024 * 1024)
#endif

/* Receives each event in order (borrowed); returns 0, or < 0 to stop. */
typedef int (*jupyter_event_fn)(void *userdata, json_t *ev);

/* Maps an IOPub message of an execution to run_code events, handed to fn one at a time:
 * stream → stdout/stderr (split as said above; text that is not UTF-8 repaired), display_data
 * → result (is_main_result false), execute_result → result (is_main_result true), error →
 * error (traceback as lines without ANSI escape codes). Every other type (status,
 * execute_input, clear_output, update_display_data, comm…) maps to nothing. data is kept
 * exactly as the kernel sent it. Returns the number of events handed over, -ENOMEM, or fn's
 * negative return. Malformed content maps to nothing. */
int jupyter_output_events(const struct jupyter_message *m, jupyter_event_fn fn, void *userdata);

/* Builds the error event {"type":"error","name":…,"value":…,"traceback":[…]} from content
 * that has ename, evalue and traceback (an error message, or an execute_reply with status
 * "error"). Missing fields become "" and []. Returns a new reference or NULL (ENOMEM). */
json_t *jupyter_error_event(json_t *content);

/* Copies n bytes of s without ANSI escape sequences (CSI "ESC [ … final", OSC "ESC ] … BEL or
 * ESC \", and other two-character escapes). Returns a new string (length in *ret_len if not
 * NULL) or NULL on allocation failure. */
char *jupyter_strip_ansi(const char *s, size_t n, size_t *ret_len);
