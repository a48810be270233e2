/* pty.h — pseudo-terminals for processes started with "pty": opening a pair, resizing it,
 * and sending it end-of-file.
 *
 * The agent keeps the master side (it reads the terminal's output from it and writes the
 * user's input to it); the child gets the slave side as fds 0-2 and as its controlling
 * terminal (process_spec.controlling_tty).
 */
#pragma once

#include <sys/types.h>

/* Opens a new terminal pair sized cols × rows. The master (*ret_master) is non-blocking;
 * the slave (*ret_slave) is not anyone's controlling terminal yet and is owned by uid
 * (mode 0620), as login(1) leaves it. Both are O_CLOEXEC. Returns 0 or -errno. */
int pty_open(unsigned cols, unsigned rows, uid_t uid, int *ret_master, int *ret_slave);

/* Sets the terminal's size; the kernel sends SIGWINCH to its foreground process group.
 * Returns 0 or -errno. */
int pty_resize(int master, unsigned cols, unsigned rows);

/* Types the terminal's end-of-file character (VEOF, normally ^D): a program reading the
 * terminal in canonical mode sees end of file. Returns 0 or -errno (-EAGAIN when the
 * terminal's input queue is full). */
int pty_send_eof(int master);
