/* Threads: 8 pthreads x 10 000 iterations each of mmap / touch (write, read back) /
 * mprotect / munmap, all at once, every result checked: 0 errors, no hang.
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd; without, it is a plain Linux program (and passes).
 * Prints "N passed, N failed"; exits non-zero on failure. An alarm() watchdog ends a hung
 * run with a message and exit status 124: when no thread has made progress for a whole
 * minute (a deadlock), or after 10 minutes in all. Neither is a timing assertion. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096L
#define THREADS 8
#define ITERATIONS 10000
#define STALL_SECONDS 60    /* no iteration done by any thread in this long: a hang */
#define WATCHDOG_SECONDS 600 /* the longest a run may take, progressing or not */



struct worker {
    pthread_t thread;
    int id, started;
    volatile long done; /* iterations completed, read by the watchdog */
    long errors;
    char first_error[160];
};

static struct worker workers[THREADS];



static void on_alarm(int sig) {
    (void)sig;
    static long last = -1, waited;
    long total = 0;
    for (int t = 0; t < THREADS; t++)
        total += workers[t].done;
    waited += STALL_SECONDS;
    if (total != last && waited < WATCHDOG_SECONDS) {
        last = total;
        alarm(STALL_SECONDS);
        return;
    }
    put(total == last ? "TIMEOUT: no progress for " : "TIMEOUT: still running after ");
    put_long(total == last ? STALL_SECONDS : waited);
    put(" s; iterations done per thread:");
    for (int t = 0; t < THREADS; t++) {
        put(" ");
        put_long(workers[t].done);
    }
    put("\n");
    _exit(124);
}

static void error(struct worker *w, long i, const char *what, int err) {
    if (w->errors++ == 0)
        snprintf(w->first_error, sizeof w->first_error, "iteration %ld: %s (errno %d)", i, what, err);
}

static void *work(void *arg) {
    struct worker *w = arg;
    unsigned x = 0x9e3779b9u * (unsigned)(w->id + 1);
    for (long i = 0; i < ITERATIONS; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        long pages = 1 + x % 4;
        long len = pages * PAGE;
        unsigned char tag = (unsigned char)(w->id * 31 + i);
        unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            error(w, i, "mmap failed", errno);
            continue;
        }
        int bad = 0;
        for (long pg = 0; pg < pages; pg++) {
            unsigned char *q = p + pg * PAGE;
            if (q[0] != 0 || q[PAGE - 1] != 0)
                bad = 1; /* fresh memory reads zero */
            q[0] = tag;
            q[PAGE - 1] = (unsigned char)(tag ^ pg);
        }
        for (long pg = 0; pg < pages; pg++)
            if (p[pg * PAGE] != tag || p[pg * PAGE + PAGE - 1] != (unsigned char)(tag ^ pg))
                bad = 1;
        if (bad)
            error(w, i, "wrong data after touch", 0);
        if (mprotect(p, len, PROT_READ) != 0)
            error(w, i, "mprotect(PROT_READ) failed", errno);
        else if (p[0] != tag || p[len - 1] != (unsigned char)(tag ^ (pages - 1)))
            error(w, i, "wrong data after mprotect", 0);
        if (munmap(p, len) != 0)
            error(w, i, "munmap failed", errno);
        w->done = i + 1;
    }
    return NULL;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm(STALL_SECONDS);

    for (int t = 0; t < THREADS; t++) {
        workers[t].id = t;
        int e = pthread_create(&workers[t].thread, NULL, work, &workers[t]);
        workers[t].started = e == 0;
        CHECK(e == 0, "pthread_create %d: %s", t, strerror(e));
    }
    long total = 0, errors = 0;
    for (int t = 0; t < THREADS; t++) {
        if (workers[t].started)
            pthread_join(workers[t].thread, NULL);
        total += workers[t].done;
        errors += workers[t].errors;
        CHECK(workers[t].done == ITERATIONS && workers[t].errors == 0,
              "thread %d: %ld iterations, %ld errors; first: %s", t, workers[t].done, workers[t].errors,
              workers[t].first_error);
    }
    printf("threads: %d x %d iterations: %ld done, %ld errors\n", THREADS, ITERATIONS, total, errors);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
