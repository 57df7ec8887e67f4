/* Gigabytes of lazily mapped memory:
 *   1. two 2 GiB private anonymous regions, touched page by page in opposite directions
 *      (one ascending, the other descending, interleaved), then every page checked;
 *   2. one 2 GiB region touched in a random order, then every page checked.
 * Every page must read zero before it is written and keep what was written. While
 * touching, the line count of /proc/self/maps (the process's host mappings) is sampled;
 * the program reports the largest sample and the count at the end of each phase (all
 * regions still mapped and touched) on one line:
 *     maps: max=N end=N
 * for the driver to judge (memserverd must not turn each page into a host mapping).
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd (run it with --mem 6G); without, it is a plain
 * Linux program (and passes; it needs 4 GiB of RAM). Prints "N passed, N failed"; exits
 * non-zero on failure. An alarm() watchdog ends a hung run (exit status 124): when no page
 * has been touched or checked for a whole minute, or after 15 minutes in all. Neither is
 * a timing assertion. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096UL
#ifndef REGION
#define REGION (2UL << 30) /* -DREGION=... for a quick run by hand */
#endif
#define PAGES (REGION / PAGE)
#define SAMPLE_EVERY 4096UL     /* pages between two samples of /proc/self/maps */
#define PROGRESS_EVERY 65536UL  /* pages between two progress lines */
#define STALL_SECONDS 60    /* no page touched or checked in this long: a hang */
#define WATCHDOG_SECONDS 900 /* the longest a run may take, progressing or not */

static const char *volatile phase = "start";
static volatile unsigned long progress; /* pages touched in this phase */
static volatile unsigned long work;     /* pages touched or checked in all */
static long max_maps, end_maps;



static void on_alarm(int sig) {
    (void)sig;
    static unsigned long last = (unsigned long)-1, waited;
    unsigned long now = work;
    waited += STALL_SECONDS;
    if (now != last && waited < WATCHDOG_SECONDS) {
        last = now;
        alarm(STALL_SECONDS);
        return;
    }
    put(now == last ? "TIMEOUT: no progress for a minute during " : "TIMEOUT: still running after 15 minutes, during ");
    put(phase);
    put(" after ");
    put_long((long)progress);
    put(" pages\n");
    _exit(124);
}

/* The number of lines of /proc/self/maps: the process's host mappings. */
static long maps_lines(void) {
    static char buf[1 << 16];
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0)
        return -1;
    long lines = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    close(fd);
    return lines;
}

static void sample(void) {
    static const long marks[] = {1000, 10000, 30000, 60000};
    long n = maps_lines();
    for (unsigned i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (max_maps < marks[i] && n >= marks[i])
            printf("maps passed %ld during %s, after %lu pages\n", marks[i], phase, progress);
    if (n > max_maps)
        max_maps = n;
}

static void report_progress(const char *what, unsigned long done) {
    progress = done;
    if (done % SAMPLE_EVERY == 0)
        sample();
    if (done % PROGRESS_EVERY == 0)
        printf("progress: %s: %lu of %lu pages, maps now %ld, max %ld\n", what, done, PAGES, maps_lines(),
               max_maps);
}

/* The word a page holds: its region and index, never zero. */
static uint64_t tag(int region, unsigned long page) {
    return ((uint64_t)(region + 1) << 40) | (page + 1);
}

/* Touches page `page` of region `r`: it must read zero, then holds its tag. */
static long errors;
static void touch(uint64_t *base, int region, unsigned long page) {
    volatile uint64_t *w = (volatile uint64_t *)((char *)base + page * PAGE);
    if (w[0] != 0 || w[PAGE / 8 - 1] != 0) {
        if (errors++ < 5)
            printf("region %d page %lu did not read zero before its first write\n", region, page);
    }
    w[0] = tag(region, page);
    w[PAGE / 8 - 1] = ~tag(region, page);
    work++;
}

/* Checks every page of a region holds its tag and zero elsewhere (sampled words). */
static long verify(uint64_t *base, int region) {
    long bad = 0;
    for (unsigned long page = 0; page < PAGES; page++) {
        volatile uint64_t *w = (volatile uint64_t *)((char *)base + page * PAGE);
        if (w[0] != tag(region, page) || w[PAGE / 8 - 1] != ~tag(region, page) || w[1] != 0 ||
            w[PAGE / 16] != 0) {
            if (bad++ < 5)
                printf("region %d page %lu: wrong data (%#llx)\n", region, page, (unsigned long long)w[0]);
        }
        work++;
    }
    return bad;
}

static uint64_t *region(void) {
    void *p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap of 2 GiB (errno %d)", errno);
    return p == MAP_FAILED ? NULL : p;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm(STALL_SECONDS);
    sample();
    printf("maps at start: %ld\n", max_maps);

    /* 1. Two regions, opposite directions. */
    phase = "phase 1 (two regions, opposite directions)";
    uint64_t *a = region(), *b = region();
    if (a && b) {
        errors = 0;
        for (unsigned long i = 0; i < PAGES; i++) {
            touch(a, 0, i);
            touch(b, 1, PAGES - 1 - i);
            report_progress("opposite directions", i + 1);
        }
        CHECK(errors == 0, "two regions in opposite directions: %ld pages did not read zero first", errors);
        phase = "phase 1 check";
        long bad_a = verify(a, 0), bad_b = verify(b, 1);
        CHECK(bad_a == 0 && bad_b == 0, "two regions in opposite directions: %ld + %ld pages with wrong data",
              bad_a, bad_b);
        long n = maps_lines();
        printf("maps after phase 1: %ld\n", n);
        if (n > end_maps)
            end_maps = n;
        sample();
    }
    CHECK(!a || munmap(a, REGION) == 0, "munmap (errno %d)", errno);
    CHECK(!b || munmap(b, REGION) == 0, "munmap (errno %d)", errno);

    /* 2. One region, random order (a permutation of its pages). */
    phase = "phase 2 (one region, random order)";
    uint32_t *order = malloc(PAGES * sizeof *order);
    uint64_t *c = region();
    if (c && order) {
        for (unsigned long i = 0; i < PAGES; i++)
            order[i] = (uint32_t)i;
        uint64_t x = 0x2545f4914f6cdd1dULL;
        for (unsigned long i = PAGES - 1; i > 0; i--) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            unsigned long j = x % (i + 1);
            uint32_t t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        errors = 0;
        for (unsigned long i = 0; i < PAGES; i++) {
            touch(c, 2, order[i]);
            report_progress("random order", i + 1);
        }
        CHECK(errors == 0, "one region in random order: %ld pages did not read zero first", errors);
        phase = "phase 2 check";
        long bad = verify(c, 2);
        CHECK(bad == 0, "one region in random order: %ld pages with wrong data", bad);
        long n = maps_lines();
        printf("maps after phase 2: %ld\n", n);
        if (n > end_maps)
            end_maps = n;
        sample();
    }
    CHECK(!c || munmap(c, REGION) == 0, "munmap (errno %d)", errno);
    free(order);

    printf("maps: max=%ld end=%ld\n", max_maps, end_maps);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
