/* locks.c — per-sandbox locks and open-stream counts, keyed by id.
 *
 * Entries exist only while someone holds or waits for the lock or a stream is open, so the
 * table stays as small as the work in flight. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/sandbox.h"

struct lock_entry {
        char id[32];
        unsigned refs;    /* holders + waiters + open streams */
        unsigned streams; /* open streams (they count as activity) */
        bool held;
        pthread_cond_t cond;
        struct lock_entry *next;
};

struct lock_table {
        pthread_mutex_t mutex;
        struct lock_entry *head;
};

int locks_new(struct lock_table **ret) {
        struct lock_table *t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        pthread_mutex_init(&t->mutex, NULL);
        *ret = t;
        return 0;
}

void locks_free(struct lock_table *t) {
        if (!t)
                return;
        while (t->head) {
                struct lock_entry *n = t->head->next;
                pthread_cond_destroy(&t->head->cond);
                free(t->head);
                t->head = n;
        }
        pthread_mutex_destroy(&t->mutex);
        free(t);
}

/* Finds or adds the entry of id with one more reference; called with the mutex held. */
static struct lock_entry *entry_ref(struct lock_table *t, const char *id) {
        struct lock_entry *le;

        for (le = t->head; le; le = le->next)
                if (streq(le->id, id)) {
                        le->refs++;
                        return le;
                }
        le = calloc(1, sizeof(*le));
        if (!le)
                abort(); /* a few dozen bytes: nothing sensible to do without them */
        snprintf(le->id, sizeof(le->id), "%s", id);
        pthread_cond_init(&le->cond, NULL);
        le->refs = 1;
        le->next = t->head;
        t->head = le;
        return le;
}

static void entry_unref(struct lock_table *t, struct lock_entry *le) {
        if (--le->refs > 0)
                return;
        for (struct lock_entry **p = &t->head; *p; p = &(*p)->next)
                if (*p == le) {
                        *p = le->next;
                        break;
                }
        pthread_cond_destroy(&le->cond);
        free(le);
}

static struct lock_entry *entry_find(struct lock_table *t, const char *id) {
        for (struct lock_entry *le = t->head; le; le = le->next)
                if (streq(le->id, id))
                        return le;
        return NULL;
}

void sandbox_lock(struct engine *eng, const char *id) {
        struct lock_table *t = eng->locks;
        struct lock_entry *le;

        pthread_mutex_lock(&t->mutex);
        le = entry_ref(t, id);
        while (le->held)
                pthread_cond_wait(&le->cond, &t->mutex);
        le->held = true;
        pthread_mutex_unlock(&t->mutex);
}

void sandbox_unlock(struct engine *eng, const char *id) {
        struct lock_table *t = eng->locks;
        struct lock_entry *le;

        pthread_mutex_lock(&t->mutex);
        le = entry_find(t, id);
        if (le) {
                le->held = false;
                pthread_cond_signal(&le->cond);
                entry_unref(t, le);
        }
        pthread_mutex_unlock(&t->mutex);
}

int sandbox_stream_begin(struct engine *eng, const char *id) {
        struct lock_table *t = eng->locks;
        struct lock_entry *le;
        int r = 0;

        pthread_mutex_lock(&t->mutex);
        le = entry_ref(t, id);
        if (le->streams >= (unsigned) eng->cfg.max_streams) {
                le->refs--; /* entry_ref took one; the entry stays: a stream holds it */
                r = -EUSERS;
        } else
                le->streams++;
        pthread_mutex_unlock(&t->mutex);
        return r;
}

void sandbox_stream_end(struct engine *eng, const char *id) {
        struct lock_table *t = eng->locks;
        struct lock_entry *le;

        pthread_mutex_lock(&t->mutex);
        le = entry_find(t, id);
        if (le && le->streams > 0) {
                le->streams--;
                entry_unref(t, le);
        }
        pthread_mutex_unlock(&t->mutex);
}

unsigned sandbox_streams(struct engine *eng, const char *id) {
        struct lock_table *t = eng->locks;
        struct lock_entry *le;
        unsigned n;

        pthread_mutex_lock(&t->mutex);
        le = entry_find(t, id);
        n = le ? le->streams : 0;
        pthread_mutex_unlock(&t->mutex);
        return n;
}
