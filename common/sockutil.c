/* sockutil.c — see sockutil.h. */
#include "sockutil.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

int tcp_connect(const struct sockaddr *sa, socklen_t len, int timeout_ms) {
        int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), err = 0, one = 1;
        socklen_t errlen = sizeof(err);
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};

        if (fd < 0)
                return -errno;
        if (connect(fd, sa, len) < 0 && errno != EINPROGRESS)
                err = errno;
        else if (poll(&pfd, 1, timeout_ms) <= 0)
                err = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
                err = errno;
        if (err) {
                close(fd);
                return -err;
        }
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return fd;
}
