/* tls.c — see tls.h. OpenSSL does the checking of the server's files (libmicrohttpd, built
 * with GnuTLS, would only say that it cannot start) and all of the client side. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "macro.h"
#include "timeutil.h"

/* A certificate chain or a key is a few KiB: anything past this is not one. */
#define PEM_MAX (1024 * 1024)

/* The whole of a PEM file, NUL-terminated. */
static int read_pem(const char *what, const char *path, char **ret, struct error *e) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return error_set(e, errno, ERR_BAD_REQUEST, "cannot open %s %s: %s", what, path, strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "%s %s is not a regular file", what, path);
        data = malloc(PEM_MAX + 1);
        if (!data)
                return error_set(e, ENOMEM, ERR_INTERNAL, "out of memory");
        while (len <= PEM_MAX && (n = read(fd, data + len, PEM_MAX + 1 - len)) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return error_set(e, errno, ERR_BAD_REQUEST, "cannot read %s %s: %s", what, path, strerror(errno));
                len += (size_t) n;
        }
        if (len > PEM_MAX)
                return error_set(e, EFBIG, ERR_BAD_REQUEST, "%s %s is larger than %d bytes: not a PEM file", what, path, PEM_MAX);
        data[len] = 0;
        *ret = TAKE_PTR(data);
        return 0;
}

/* OpenSSL's default would prompt on the terminal for an encrypted key's passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
        return 0;
}

static const char *openssl_error(char *buf, size_t size) {
        unsigned long err = ERR_peek_last_error();

        if (!err)
                snprintf(buf, size, "no PEM data");
        else
                ERR_error_string_n(err, buf, size);
        ERR_clear_error();
        return buf;
}

int tls_server_load(const char *cert_file, const char *key_file, char **ret_cert, char **ret_key, struct error *e) {
        _cleanup_free_ char *cert_pem = NULL, *key_pem = NULL;
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        BIO *bio;
        char why[256];
        int r = 0;

        if (!*cert_file || !*key_file)
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "tls-cert and tls-key go together: set %s too",
                                 *cert_file ? "tls-key" : "tls-cert");
        if ((r = read_pem("tls-cert", cert_file, &cert_pem, e)) < 0 || (r = read_pem("tls-key", key_file, &key_pem, e)) < 0)
                return r;
        ERR_clear_error();
        bio = BIO_new_mem_buf(cert_pem, -1);
        cert = bio ? PEM_read_bio_X509(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        if (!cert) {
                r = error_set(e, EINVAL, ERR_BAD_REQUEST, "tls-cert %s holds no PEM certificate (%s)", cert_file,
                              openssl_error(why, sizeof(why)));
                goto out;
        }
        bio = BIO_new_mem_buf(key_pem, -1);
        key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
        BIO_free(bio);
        if (!key) {
                r = error_set(e, EINVAL, ERR_BAD_REQUEST,
                              "tls-key %s holds no unencrypted PEM private key (%s); an encrypted key must be decrypted first "
                              "(openssl pkey -in KEY -out PLAIN)",
                              key_file, openssl_error(why, sizeof(why)));
                goto out;
        }
        if (X509_check_private_key(cert, key) != 1) {
                ERR_clear_error();
                r = error_set(e, EINVAL, ERR_BAD_REQUEST, "tls-key %s is not the key of the certificate in tls-cert %s", key_file,
                              cert_file);
                goto out;
        }
        *ret_cert = TAKE_PTR(cert_pem);
        *ret_key = TAKE_PTR(key_pem);
out:
        X509_free(cert);
        EVP_PKEY_free(key);
        return r;
}

int tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **ret, struct error *e) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
        char why[256];

        if (!ctx)
                return error_set(e, ENOMEM, ERR_INTERNAL, "cannot make a TLS context: %s", openssl_error(why, sizeof(why)));
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
                SSL_CTX_free(ctx);
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "cannot use tls-cert %s with tls-key %s: %s", cert_file, key_file,
                                 openssl_error(why, sizeof(why)));
        }
        *ret = ctx;
        return 0;
}

int tls_client_new(const char *ca_file, SSL_CTX **ret, struct error *e) {
        _cleanup_free_ char *pem = NULL;
        SSL_CTX *ctx;
        char why[256];
        int r;

        /* Read once first: a missing file is named with its errno, not OpenSSL's "system lib". */
        if (*ca_file && (r = read_pem("cluster-ca", ca_file, &pem, e)) < 0)
                return r;
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
                return error_set(e, ENOMEM, ERR_INTERNAL, "cannot make a TLS context: %s", openssl_error(why, sizeof(why)));
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        /* Writes go out as they are taken (agent_stream's send loop retries the rest), and
         * a peer that closes without close_notify is an end of stream: the answer's own
         * framing (Content-Length or chunked) tells a cut answer from a whole one. */
        SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
        if (*ca_file ? SSL_CTX_load_verify_file(ctx, ca_file) != 1 : SSL_CTX_set_default_verify_paths(ctx) != 1) {
                SSL_CTX_free(ctx);
                return error_set(e, EINVAL, ERR_BAD_REQUEST, "cannot load cluster-ca %s: %s", *ca_file ? ca_file : "(system)",
                                 openssl_error(why, sizeof(why)));
        }
        *ret = ctx;
        return 0;
}

int tls_client_expect_host(SSL *ssl, const char *host) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        unsigned char addr[16];
        bool ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;

        /* An address is matched against the certificate's IP SANs, a name against its DNS
         * SANs (no wildcard across labels); SNI carries names only. */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip)
                return X509_VERIFY_PARAM_set1_ip_asc(param, host) == 1 ? 0 : -ENOMEM;
        if (SSL_set_tlsext_host_name(ssl, host) != 1)
                return -ENOMEM;
        return X509_VERIFY_PARAM_set1_host(param, host, 0) == 1 ? 0 : -ENOMEM;
}

int tls_handshake(SSL *ssl, int fd, bool server, int watch_fd, long timeout_ms) {
        int64_t deadline = mono_ms() + timeout_ms;
        struct pollfd p[2] = {{.fd = fd}, {.fd = watch_fd, .events = POLLRDHUP}};
        int ret, n;

        for (;;) {
                ERR_clear_error();
                errno = 0;
                ret = server ? SSL_accept(ssl) : SSL_connect(ssl);
                if (ret == 1)
                        return 0;
                switch (SSL_get_error(ssl, ret)) {
                case SSL_ERROR_WANT_READ:
                        p[0].events = POLLIN;
                        break;
                case SSL_ERROR_WANT_WRITE:
                        p[0].events = POLLOUT;
                        break;
                case SSL_ERROR_SYSCALL: /* the peer's reset is not watch_fd's hang-up */
                        if (errno && errno != EAGAIN)
                                return errno == ECONNRESET ? -ECONNABORTED : -errno;
                        return -EPROTO;
                default:
                        return -EPROTO;
                }
                do {
                        int64_t left = deadline - mono_ms();
                        n = left <= 0 ? 0 : poll(p, watch_fd >= 0 ? 2 : 1, (int) left);
                } while (n < 0 && errno == EINTR);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ETIMEDOUT;
                if (watch_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
                        return -ECONNRESET;
        }
}

const char *tls_error(SSL *ssl, char *buf, size_t size) {
        long v = SSL_get_verify_result(ssl);

        if (v != X509_V_OK) {
                snprintf(buf, size, "its certificate is not trusted: %s", X509_verify_cert_error_string(v));
                ERR_clear_error();
                return buf;
        }
        if (!ERR_peek_last_error()) {
                snprintf(buf, size, "the connection broke off during the TLS handshake (does it speak TLS?)");
                return buf;
        }
        return openssl_error(buf, size);
}
