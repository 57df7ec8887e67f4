/* What every program here shares: pass/fail counters, CHECK with a printf-style reason
 * (the errno at the failure is printed too), the closing "N passed, N failed" line, and
 * output that is safe in a signal handler (put, put_long). Header-only, so each program
 * still builds alone, against memserverd or as a plain Linux program. */
#ifndef MEMSERVER_C_TESTS_CHECK_H
#define MEMSERVER_C_TESTS_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(cond, ...)                                                               \
    do {                                                                               \
        int errno_ = errno;                                                            \
        if (cond) {                                                                    \
            passed++;                                                                  \
        } else {                                                                       \
            failed++;                                                                  \
            printf("FAIL (line %d): ", __LINE__);                                      \
            printf(__VA_ARGS__);                                                       \
            printf(" (errno %d)\n", errno_);                                           \
        }                                                                              \
    } while (0)

/* The closing line every runner reads; the exit status says the same. */
static inline int report(void) {
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

/* Writes a string with write(2): safe in a signal handler. */
static inline void put(const char *s) {
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

/* Writes a number with write(2): safe in a signal handler. */
static inline void put_long(long v) {
    char buf[24];
    int i = sizeof buf;
    buf[--i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0 && i > 0);
    put(buf + i);
}

#endif
