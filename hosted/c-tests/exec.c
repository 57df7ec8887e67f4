/* exec leaves no stale window: the program maps and touches memory, forks, and the
 * child execs `sleep` at once. The child's client (the clone it adopted at fork) must
 * be gone from the server as soon as the exec happens, not when the sleeper exits: the
 * driver counts the server's clients while the sleeper still runs. The parent's memory
 * is untouched by all this. Prints "ready <child pid>", then waits for a line on stdin. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include "check.h"

int main(void) {
    const long page = 4096;
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120);
    char *p = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap");
    if (p == MAP_FAILED)
        return report();
    memset(p, 'p', 4 * page);
    pid_t child = fork();
    if (child == 0) {
        execlp("sleep", "sleep", "60", (char *)NULL);
        _exit(127);
    }
    CHECK(child > 0, "fork");
    printf("ready %d\n", (int)child);
    char line[16];
    CHECK(fgets(line, sizeof line, stdin) != NULL, "the driver's go-ahead");
    CHECK(p[0] == 'p' && p[4 * page - 1] == 'p', "the parent's memory is its own");
    char *q = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(q != MAP_FAILED && q[0] == 0, "the parent maps on");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return report();
}
