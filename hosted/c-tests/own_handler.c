/* A program with its own SIGSEGV (and SIGBUS) handler, as JVMs, Go, Python's faulthandler
 * and Rust's runtime install: installed AFTER the program's first mmap, it must never
 * see the faults that lazily mapped memory takes (those just work), and must see the
 * program's real faults, with the right si_addr and si_code, recovering with
 * sigsetjmp / siglongjmp:
 *   - lazily mapped memory (mapped before and after the handler was installed, private
 *     anonymous and a shm object) touched page by page: the handler is not called;
 *   - a read of a page that was mapped then unmapped: SIGSEGV, SEGV_MAPERR, si_addr;
 *   - a write to a PROT_READ page: SIGSEGV, SEGV_ACCERR, si_addr;
 *   - a read near address 0, outside any mapping: SIGSEGV, SEGV_MAPERR, si_addr;
 *   - lazily mapped memory after all that still just works.
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd; without, it is a plain Linux program (and passes).
 * Prints "N passed, N failed"; exits non-zero on failure. An alarm() watchdog (120 s)
 * ends a hung run. */
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
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096L
#define LAZY_PAGES 64
#define WATCHDOG_SECONDS 120



static sigjmp_buf recover;
static volatile sig_atomic_t armed, calls, last_sig, last_code;
static void *volatile last_addr;


static void on_fault(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    calls++;
    last_sig = sig;
    last_code = info->si_code;
    last_addr = info->si_addr;
    if (armed) {
        armed = 0;
        siglongjmp(recover, 1);
    }
    put("FAIL: a fault with no recovery point armed; giving up\n");
    _exit(5);
}

static void on_alarm(int sig) {
    (void)sig;
    put("TIMEOUT: watchdog fired\n");
    _exit(124);
}

/* Writes then reads back one byte in each page of [p, p + pages * PAGE); returns the
   number of pages that worked before the handler was called (pages if none). */
static long touch(volatile unsigned char *p, long pages, unsigned char tag) {
    static volatile long i;
    i = 0;
    if (sigsetjmp(recover, 1) != 0)
        return i;
    armed = 1;
    for (i = 0; i < pages; i++) {
        if (p[i * PAGE + 100] != 0)
            break;
        p[i * PAGE + 100] = (unsigned char)(tag + i);
        if (p[i * PAGE + 100] != (unsigned char)(tag + i))
            break;
    }
    armed = 0;
    return i;
}

/* Does the access; returns 1 if the handler caught it. */
static int fault(volatile unsigned char *addr, int write) {
    if (sigsetjmp(recover, 1) != 0)
        return 1;
    armed = 1;
    if (write)
        *addr = 1;
    else
        (void)*addr;
    armed = 0;
    return 0;
}

/* Reads a byte; -1 if the read reached the handler. */
static int peek(volatile unsigned char *addr) {
    static volatile int v;
    v = -1;
    if (sigsetjmp(recover, 1) != 0)
        return -1;
    armed = 1;
    v = *addr;
    armed = 0;
    return v;
}

static void lazy(const char *what, unsigned char *p, long pages, unsigned char tag) {
    int before = calls;
    long ok = touch(p, pages, tag);
    CHECK(ok == pages && calls == before,
          "touching %s: %ld of %ld pages worked; the program's handler was called %d times (last: signal %d, "
          "si_code %d, si_addr %p, region %p)",
          what, ok, pages, (int)(calls - before), (int)last_sig, (int)last_code, last_addr, (void *)p);
}

static void expect_fault(const char *what, unsigned char *addr, int write, int code) {
    int before = calls;
    int caught = fault(addr, write);
    CHECK(caught && calls == before + 1, "%s: the program's handler caught it (called %d times)", what,
          (int)(calls - before));
    if (!caught)
        return;
    CHECK(last_sig == SIGSEGV, "%s: signal %d, expected SIGSEGV (%d)", what, (int)last_sig, SIGSEGV);
    CHECK(last_addr == (void *)addr, "%s: si_addr %p, expected %p", what, last_addr, (void *)addr);
    CHECK(last_code == code, "%s: si_code %d, expected %d", what, (int)last_code, code);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_SECONDS);

    /* The first mmap (and touch) happens before the handler exists. */
    unsigned char *first = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(first != MAP_FAILED, "first mmap (errno %d)", errno);
    if (first == MAP_FAILED) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    first[0] = 1;
    unsigned char *early =
        mmap(NULL, LAZY_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(early != MAP_FAILED, "mmap before the handler (errno %d)", errno);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0 && sigaction(SIGBUS, &sa, NULL) == 0, "sigaction");

    unsigned char *late =
        mmap(NULL, LAZY_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(late != MAP_FAILED, "mmap after the handler (errno %d)", errno);
    char name[64];
    snprintf(name, sizeof name, "/own-handler-%d", (int)getpid());
    shm_unlink(name);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    unsigned char *obj = MAP_FAILED;
    if (fd >= 0 && ftruncate(fd, 8 * PAGE) == 0)
        obj = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(obj != MAP_FAILED, "a shm object mapped after the handler (errno %d)", errno);

    /* Lazily mapped memory just works; the program's handler hears nothing of it. */
    lazy("the rest of the first mapping", first + PAGE, 3, 1);
    if (early != MAP_FAILED)
        lazy("memory mapped before the handler", early, LAZY_PAGES, 2);
    if (late != MAP_FAILED)
        lazy("memory mapped after the handler", late, LAZY_PAGES, 3);
    if (obj != MAP_FAILED)
        lazy("a shm object", obj, 8, 4);

    /* The program's own faults reach its handler, as on Linux. */
    unsigned char *gone = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (gone != MAP_FAILED && munmap(gone, PAGE) == 0)
        expect_fault("a read of an unmapped page", gone + 123, 0, SEGV_MAPERR);
    else
        CHECK(0, "mmap + munmap of a page to fault on (errno %d)", errno);
    unsigned char *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ro != MAP_FAILED) {
        int before = calls;
        int caught = fault(ro + 8, 0);
        CHECK(!caught && calls == before, "a read of a PROT_READ page works (the handler was called %d times)",
              (int)(calls - before));
        expect_fault("a write to a PROT_READ page", ro + 8, 1, SEGV_ACCERR);
    } else {
        CHECK(0, "mmap PROT_READ (errno %d)", errno);
    }
    expect_fault("a read near address 0", (unsigned char *)16, 0, SEGV_MAPERR);

    /* And lazy memory still just works afterwards. */
    unsigned char *after =
        mmap(NULL, LAZY_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(after != MAP_FAILED, "mmap after the faults (errno %d)", errno);
    if (after != MAP_FAILED)
        lazy("memory mapped after the faults", after, LAZY_PAGES, 5);
    int v0 = peek(first), v1 = early == MAP_FAILED ? 2 : peek(early + 100),
        v2 = late == MAP_FAILED ? 3 : peek(late + 100);
    CHECK(v0 == 1 && v1 == 2 && v2 == 3, "the data written earlier is intact (read %d %d %d; -1: the handler was "
                                         "called)", v0, v1, v2);

    if (obj != MAP_FAILED) {
        munmap(obj, 8 * PAGE);
        close(fd);
    }
    shm_unlink(name);
    printf("handler calls: %d\n", (int)calls);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
