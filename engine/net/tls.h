/* tls.h — the engine's TLS (issue 14): the certificate and key its API port serves
 * (libmicrohttpd speaks TLS through GnuTLS; this reads and checks the files first, so that a
 * wrong one is a clear message at start, not a port that fails every handshake), and the
 * client context of the requests between nodes (OpenSSL: api/relay.c, placement, drain),
 * which verifies every peer's certificate against the cluster CA and its advertised host.
 */
#pragma once

#include <openssl/ssl.h>
#include <stdbool.h>

#include "error.h"

/* Reads the PEM files of --tls-cert and --tls-key into NUL-terminated malloc'd strings,
 * after checking that the certificate (chain) and the key parse and that the key is the
 * certificate's. Errors (400 in e) name the file and what is wrong with it. */
int tls_server_load(const char *cert_file, const char *key_file, char **ret_cert, char **ret_key, struct error *e);

/* A server context with the certificate (chain) and key of cert_file and key_file (the
 * preview proxy's; tls_server_load checked them), TLS 1.2 or later. */
int tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **ret, struct error *e);

/* A client context for connections to other nodes: TLS 1.2 or later, the peer's certificate
 * verified against the CA certificates of ca_file (PEM), or against the system's trusted
 * CAs when ca_file is "". Errors name the file. */
int tls_client_new(const char *ca_file, SSL_CTX **ret, struct error *e);

/* Prepares ssl to connect to host: SNI (for a name) and the name or IP address the peer's
 * certificate must carry. -ENOMEM. */
int tls_client_expect_host(SSL *ssl, const char *host);

/* Runs ssl's handshake over the non-blocking socket fd (SSL_set_fd done): as the server
 * (SSL_accept) or the client (SSL_connect), within timeout_ms. -ETIMEDOUT; -ECONNRESET when
 * watch_fd (if >= 0) hangs up meanwhile; -EPROTO when TLS failed (tls_error says why),
 * -ECONNABORTED when the peer reset the connection, or another -errno of the socket. */
int tls_handshake(SSL *ssl, int fd, bool server, int watch_fd, long timeout_ms);

/* What went wrong in the last failed TLS call of ssl into buf: the verification result when
 * the peer's certificate was refused, else OpenSSL's error queue. Returns buf. */
const char *tls_error(SSL *ssl, char *buf, size_t size);
