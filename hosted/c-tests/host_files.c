/* mmap of a regular file, the way a program such as SQLite uses it, checked as Linux
 * behaves:
 *   - pwrite then read through a MAP_SHARED mapping, and a write through the mapping
 *     read back with pread (one page cache for both);
 *   - the tail of the last page reads zero; a page wholly past the end is SIGBUS, and
 *     after ftruncate grows the file the same address reads the new bytes;
 *   - MAP_PRIVATE is copy-on-write: its writes reach neither the file nor other mappings;
 *   - after fork, the child sees the parent's writes through the mapping it inherited and
 *     through a new one, and the parent sees the child's;
 *   - msync(MS_SYNC / MS_ASYNC / MS_INVALIDATE) succeeds on the mapping;
 *   - EACCES for a shared writable mapping of a read-only fd (and for mprotect making a
 *     read-only shared mapping writable), ENODEV for a pipe, a socket and a directory,
 *     EBADF for a closed fd, EOVERFLOW where offset + length pass the maximum offset.
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd; without, it is a plain Linux program (and passes).
 * Prints "N passed, N failed" (the child's checks included); exits non-zero on failure.
 * An alarm() watchdog (120 s, not a timing assertion) ends a hung run. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096L
#define SIZE (3 * PAGE + 100)
#define WATCHDOG_SECONDS 120

static sigjmp_buf jump;
static volatile sig_atomic_t bus_seen;

static void on_bus(int sig) {
    (void)sig;
    bus_seen = 1;
    siglongjmp(jump, 1);
}

static void on_alarm(int sig) {
    (void)sig;
    put("TIMEOUT: host_files hung\n");
    _exit(124);
}

static unsigned char pattern(long i) { return (unsigned char)(i % 251); }

/* Whether reading p[0] raises SIGBUS. */
static int bus_on_read(volatile unsigned char *p) {
    bus_seen = 0;
    if (sigsetjmp(jump, 1) == 0) {
        unsigned char v = *p;
        (void)v;
    }
    return bus_seen;
}

static void child_side(int fd, unsigned char *inherited) {
    int ok = 1;
    /* The parent's write, through the inherited mapping and a new one. */
    ok &= memcmp(inherited + 100, "PARENT", 6) == 0;
    unsigned char *mine = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ok &= mine != MAP_FAILED;
    if (mine != MAP_FAILED) {
        ok &= memcmp(mine + 100, "PARENT", 6) == 0;
        memcpy(mine + 200, "CHILD!", 6);
        ok &= munmap(mine, 3 * PAGE) == 0;
    }
    memcpy(inherited + 300, "INHERT", 6);
    _exit(ok ? 0 : 1);
}

int main(void) {
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_SECONDS);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, NULL);

    char path[] = "/tmp/host_files-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return report();
    CHECK(ftruncate(fd, SIZE) == 0, "ftruncate");
    unsigned char buf[SIZE];
    for (long i = 0; i < SIZE; i++)
        buf[i] = pattern(i);
    CHECK(pwrite(fd, buf, SIZE, 0) == SIZE, "pwrite the file");

    /* Shared: the file's bytes, the zero tail, and one page cache with pread/pwrite. */
    unsigned char *s = mmap(NULL, 6 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(s != MAP_FAILED, "mmap MAP_SHARED of a regular file");
    if (s == MAP_FAILED)
        return report();
    CHECK(memcmp(s, buf, SIZE) == 0, "the file's bytes through the mapping");
    int tail_zero = 1;
    for (long i = SIZE; i < 4 * PAGE; i++)
        tail_zero &= s[i] == 0;
    CHECK(tail_zero, "the tail of the last page reads zero");
    CHECK(pwrite(fd, "PWRITE", 6, 5000) == 6, "pwrite");
    CHECK(memcmp(s + 5000, "PWRITE", 6) == 0, "pwrite is seen through the mapping");
    memcpy(s + 100, "PARENT", 6);
    char got[6];
    CHECK(pread(fd, got, 6, 100) == 6 && memcmp(got, "PARENT", 6) == 0,
          "a write through the mapping is pread's");
    CHECK(msync(s, 4 * PAGE, MS_SYNC) == 0, "msync MS_SYNC");
    CHECK(msync(s, 4 * PAGE, MS_ASYNC) == 0, "msync MS_ASYNC");
    CHECK(msync(s, 4 * PAGE, MS_INVALIDATE) == 0, "msync MS_INVALIDATE");
    CHECK(memcmp(s + 100, "PARENT", 6) == 0, "MS_INVALIDATE keeps a shared write");

    /* Past the end, then grown. */
    CHECK(bus_on_read(s + 4 * PAGE), "a page past the end is SIGBUS");
    CHECK(ftruncate(fd, 5 * PAGE) == 0, "ftruncate grows the file");
    CHECK(pwrite(fd, "GROWN", 5, 4 * PAGE + 8) == 5, "pwrite the new page");
    CHECK(!bus_on_read(s + 4 * PAGE) && memcmp(s + 4 * PAGE + 8, "GROWN", 5) == 0,
          "the grown page reads through the same mapping");

    /* Private: copy-on-write. */
    unsigned char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED, "mmap MAP_PRIVATE");
    if (p != MAP_FAILED) {
        CHECK(memcmp(p + 100, "PARENT", 6) == 0, "a private mapping starts as the file");
        memcpy(p, "COW", 3);
        CHECK(memcmp(s, buf, 3) == 0, "a private write is not the shared mapping's");
        CHECK(pread(fd, got, 3, 0) == 3 && memcmp(got, buf, 3) == 0,
              "a private write is not the file's");
        CHECK(munmap(p, PAGE) == 0, "munmap the private mapping");
    }

    /* fork: both directions, through inherited and new mappings. */
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0)
        child_side(fd, s);
    int status = -1;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child saw the parent's writes (status %d)", status);
    CHECK(memcmp(s + 200, "CHILD!", 6) == 0, "the child's write through its own mapping");
    CHECK(memcmp(s + 300, "INHERT", 6) == 0, "the child's write through the inherited one");

    /* Refusals. */
    int ro = open(path, O_RDONLY);
    CHECK(ro >= 0, "open O_RDONLY");
    errno = 0;
    CHECK(mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED &&
              errno == EACCES,
          "a shared writable mapping of a read-only fd is EACCES");
    unsigned char *r = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(r != MAP_FAILED, "a shared read-only mapping of a read-only fd");
    if (r != MAP_FAILED) {
        CHECK(memcmp(r + 100, "PARENT", 6) == 0, "it reads the file");
        errno = 0;
        CHECK(mprotect(r, PAGE, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
              "it never becomes writable");
        munmap(r, PAGE);
    }
    int pfd[2];
    CHECK(pipe(pfd) == 0, "pipe");
    errno = 0;
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, pfd[0], 0) == MAP_FAILED && errno == ENODEV,
          "a pipe is ENODEV");
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    errno = 0;
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, sv[0], 0) == MAP_FAILED && errno == ENODEV,
          "a socket is ENODEV");
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY);
    errno = 0;
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, dir, 0) == MAP_FAILED && errno == ENODEV,
          "a directory is ENODEV");
    close(dir);
    errno = 0;
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, dir, 0) == MAP_FAILED && errno == EBADF,
          "a closed fd is EBADF");
    errno = 0;
    off_t far = INT64_MAX & ~(PAGE - 1);
    CHECK(mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, ro, far) == MAP_FAILED &&
              errno == EOVERFLOW,
          "offset + length past the maximum offset is EOVERFLOW");

    CHECK(munmap(s, 6 * PAGE) == 0, "munmap");
    close(ro);
    close(fd);
    unlink(path);
    return report();
}
