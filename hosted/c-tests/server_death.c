/* Loops mmap / touch / munmap forever, printing "looping" once after the first iteration,
 * for a driver to kill the memory server (SIGKILL) under it. The program must then end
 * within seconds, as a program does when the memory under it goes away:
 *   - a call fails: it prints "call failed: <call> errno=N (<text>)" and exits 3
 *     (errno EIO is what the driver expects);
 *   - or a touch faults and the process dies of SIGBUS.
 * Wrong data read back ends it with status 4. With an argument N it stops after N
 * iterations and prints "N passed, 0 failed" (how it is checked as a plain Linux program,
 * where no server dies). An alarm() watchdog (120 s) ends it with status 124 if it hangs.
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd; without, it is a plain Linux program. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096L
#define WATCHDOG_SECONDS 120

static volatile const char *phase = "start";


static void on_alarm(int sig) {
    (void)sig;
    put("TIMEOUT: watchdog fired in ");
    put((const char *)phase);
    put("\n");
    _exit(124);
}

static void call_failed(const char *call) {
    int e = errno;
    printf("call failed: %s errno=%d (%s)\n", call, e, strerror(e));
    exit(3);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_SECONDS);
    long limit = argc > 1 ? atol(argv[1]) : -1;

    for (long i = 0; limit < 0 || i < limit; i++) {
        long pages = 1 + i % 8;
        phase = "mmap";
        unsigned char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            call_failed("mmap");
        phase = "touch";
        for (long pg = 0; pg < pages; pg++)
            p[pg * PAGE + pg] = (unsigned char)(i + pg);
        for (long pg = 0; pg < pages; pg++)
            if (p[pg * PAGE + pg] != (unsigned char)(i + pg) || p[pg * PAGE + PAGE - 1] != 0) {
                printf("wrong data read back at iteration %ld\n", i);
                return 4;
            }
        phase = "munmap";
        if (munmap(p, pages * PAGE) != 0)
            call_failed("munmap");
        if (i == 0)
            printf("looping\n");
    }
    printf("%ld passed, 0 failed\n", limit);
    return 0;
}
