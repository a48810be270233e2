/* pty.c — see pty.h. The slave is opened from the master with TIOCGPTPEER (Linux 4.13),
 * which needs no path lookup in /dev/pts; ptsname_r() + open() is the fallback. */
#include "pty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "macro.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

static int open_slave(int master) {
        char name[64];
        int fd;

        fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd >= 0)
                return fd;
        if (ptsname_r(master, name, sizeof(name)) != 0)
                return -errno;
        fd = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int pty_open(unsigned cols, unsigned rows, uid_t uid, int *ret_master, int *ret_slave) {
        _cleanup_close_ int master = -1, slave = -1;
        int r;

        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
        if (master < 0)
                return -errno;
        if (grantpt(master) < 0 || unlockpt(master) < 0)
                return -errno;
        slave = open_slave(master);
        if (slave < 0)
                return slave;
        /* Best effort: a terminal the user does not own still works through the open fds. */
        (void) !fchown(slave, uid, (gid_t) -1);
        (void) fchmod(slave, 0620);
        r = pty_resize(master, cols, rows);
        if (r < 0)
                return r;
        *ret_master = TAKE_FD(master);
        *ret_slave = TAKE_FD(slave);
        return 0;
}

int pty_resize(int master, unsigned cols, unsigned rows) {
        struct winsize ws = {.ws_col = (unsigned short) cols, .ws_row = (unsigned short) rows};

        if (ioctl(master, TIOCSWINSZ, &ws) < 0)
                return -errno;
        return 0;
}

int pty_send_eof(int master) {
        struct termios t;
        char eof;

        /* On a master, TCGETS reports the slave side's settings, which are the ones in force. */
        if (tcgetattr(master, &t) < 0)
                return -errno;
        eof = (char) t.c_cc[VEOF];
        if (write(master, &eof, 1) < 0)
                return -errno;
        return 0;
}
