/* fork() of a program that maps memory, checked on both sides:
 *   - a MAP_PRIVATE page is copy-on-write: the child sees the parent's data from before
 *     the fork, and neither side sees the other's later writes;
 *   - a private page the parent never touched still reads zero in the parent after the
 *     child wrote it;
 *   - MAP_SHARED anonymous memory is shared both ways;
 *   - memory either side maps after the fork is its own: the parent's next mmap returns
 *     zero-filled memory that the child's data never shows through, and neither side's
 *     writes reach the other's new mapping;
 *   - parent and child loop mmap / touch / munmap at the same time (bounded) without
 *     hanging, every result checked.
 *
 * Portable Linux C: with -DMEMSERVER_STANDARD_NAMES and memserver's include directory the
 * <sys/mman.h> calls go to memserverd; without, it is a plain Linux program (and passes).
 * Prints "N passed, N failed" (the child's checks included); exits non-zero on failure.
 * alarm() watchdogs (120 s, not timing assertions) end a hung parent or child. */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"

#define PAGE 4096L
#define LOOP_ITERATIONS 3000
#define WATCHDOG_SECONDS 120

static const char *side = "parent";
static const char *volatile phase = "start";


static volatile pid_t child_pid;


static void on_alarm(int sig) {
    (void)sig;
    put("TIMEOUT: watchdog fired in the ");
    put(side);
    put(" during: ");
    put(phase);
    put("\n");
    if (child_pid > 0)
        kill(child_pid, SIGKILL);
    _exit(124);
}

static void watchdog(unsigned seconds) {
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}

/* One-byte messages between the two sides; a dead peer reads as 0. */
static void send_msg(int fd, char c) {
    while (write(fd, &c, 1) < 0 && errno == EINTR) {
    }
}

static char recv_msg(int fd) {
    char c;
    ssize_t r;
    while ((r = read(fd, &c, 1)) < 0 && errno == EINTR) {
    }
    return r == 1 ? c : 0;
}

static int all_bytes(const unsigned char *p, long len, unsigned char v) {
    for (long i = 0; i < len; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

/* mmap / touch / check / munmap, `n` times; returns the number of errors. */
static long loop(long n, unsigned char salt) {
    long errors = 0;
    for (long i = 0; i < n; i++) {
        long pages = 1 + i % 4;
        unsigned char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            if (errors++ == 0)
                printf("%s: loop mmap failed, errno %d\n", side, errno);
            continue;
        }
        unsigned char tag = (unsigned char)(salt ^ i);
        for (long pg = 0; pg < pages; pg++) {
            if (p[pg * PAGE + 17] != 0 && errors++ == 0)
                printf("%s: loop: fresh memory is not zero (iteration %ld)\n", side, i);
            p[pg * PAGE + 17] = tag;
        }
        for (long pg = 0; pg < pages; pg++)
            if (p[pg * PAGE + 17] != tag && errors++ == 0)
                printf("%s: loop: wrong data read back (iteration %ld)\n", side, i);
        if (munmap(p, pages * PAGE) != 0 && errors++ == 0)
            printf("%s: loop munmap failed, errno %d\n", side, errno);
    }
    return errors;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN); /* a dead peer shows as a failed check, not a dead process */
    watchdog(WATCHDOG_SECONDS);

    /* Before the fork: two private pages (only the first touched) and a shared page. */
    unsigned char *priv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *shared = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(priv != MAP_FAILED && shared != MAP_FAILED, "mmap before fork (errno %d)", errno);
    if (priv == MAP_FAILED || shared == MAP_FAILED) {
        printf("%d passed, %d failed\n", passed, failed);
        return 1;
    }
    priv[0] = 'P';
    shared[0] = 'S';

    int to_child[2], to_parent[2], results[2];
    if (pipe(to_child) || pipe(to_parent) || pipe(results)) {
        perror("pipe");
        return 2;
    }
    fflush(stdout);
    phase = "fork";
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }

    if (pid == 0) {
        /* ---- the child ---- */
        side = "child";
        watchdog(WATCHDOG_SECONDS - 15); /* before the parent's: a hung child says where */
        close(to_child[1]);
        close(to_parent[0]);
        close(results[0]);
        int in = to_child[0], out = to_parent[1];

        phase = "child: reading the parent's pre-fork data";
        CHECK(priv[0] == 'P', "the child sees the parent's private data from before the fork (got %d)", priv[0]);
        CHECK(shared[0] == 'S', "the child sees the shared page's data (got %d)", shared[0]);
        phase = "child: writing its private and shared pages";
        priv[0] = 'C';
        priv[PAGE] = 'c';
        shared[1] = 'c';
        CHECK(priv[0] == 'C' && priv[PAGE] == 'c', "the child reads its own private writes");
        send_msg(out, 'w');

        phase = "child: waiting for the parent's writes";
        CHECK(recv_msg(in) == 'r', "the parent answers");
        CHECK(shared[2] == 'p', "the parent's write to the shared page is seen by the child (got %d)", shared[2]);
        CHECK(priv[0] == 'C', "the parent's private write is not seen by the child (got %d)", priv[0]);

        /* New memory of the child's own, then the parent maps too. */
        phase = "child: mapping new memory";
        unsigned char *mine = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(mine != MAP_FAILED, "the child's mmap after fork (errno %d)", errno);
        if (mine != MAP_FAILED) {
            CHECK(all_bytes(mine, 2 * PAGE, 0), "the child's new memory reads zero");
            memset(mine, 0xC1, 2 * PAGE);
        }
        send_msg(out, 'a');
        unsigned char *where = mine == MAP_FAILED ? NULL : mine;
        if (write(out, &where, sizeof where) != (ssize_t)sizeof where)
            printf("child: could not send its address\n");
        phase = "child: waiting for the parent's new mapping";
        CHECK(recv_msg(in) == 'b', "the parent answers");
        if (mine != MAP_FAILED) {
            CHECK(all_bytes(mine, 2 * PAGE, 0xC1), "the child's new memory keeps the child's data after the "
                                                     "parent mapped and wrote its own");
            memset(mine, 0xC3, 2 * PAGE);
        }
        send_msg(out, 'c');

        /* Both loop at once. */
        phase = "child: waiting to loop";
        CHECK(recv_msg(in) == 'g', "the parent starts the loop");
        phase = "child: looping mmap/touch/munmap";
        long errors = loop(LOOP_ITERATIONS, 0x5a);
        CHECK(errors == 0, "the child's %d loop iterations: %ld errors", LOOP_ITERATIONS, errors);
        if (mine != MAP_FAILED)
            CHECK(all_bytes(mine, 2 * PAGE, 0xC3), "the child's memory survives both loops");
        CHECK(priv[0] == 'C' && priv[PAGE] == 'c', "the child's private pages survive both loops");

        phase = "child: reporting";
        int counts[2] = {passed, failed};
        ssize_t w = write(results[1], counts, sizeof counts);
        (void)w;
        _exit(failed != 0);
    }

    /* ---- the parent ---- */
    child_pid = pid;
    close(to_child[0]);
    close(to_parent[1]);
    close(results[1]);
    int in = to_parent[0], out = to_child[1];

    phase = "parent: waiting for the child's writes";
    char m = recv_msg(in);
    CHECK(m == 'w', "the child wrote its pages");
    if (m == 'w') {
        CHECK(priv[0] == 'P', "the child's write to a MAP_PRIVATE page is not seen by the parent (got %d)",
              priv[0]);
        CHECK(priv[PAGE] == 0,
              "a private page the parent never touched reads zero after the child wrote it (got %d)", priv[PAGE]);
        CHECK(shared[1] == 'c', "the child's write to MAP_SHARED memory is seen by the parent (got %d)",
              shared[1]);
    }
    shared[2] = 'p';
    priv[0] = 'Q';
    send_msg(out, 'r');

    phase = "parent: waiting for the child's new mapping";
    m = recv_msg(in);
    CHECK(m == 'a', "the child mapped new memory");
    unsigned char *childs = NULL;
    if (m == 'a' && read(in, &childs, sizeof childs) != (ssize_t)sizeof childs)
        childs = NULL;
    /* The child's new mapping is in the child's address space only: the parent has nothing
       there, so it can map exactly there, and gets zero-filled memory of its own. */
    unsigned char *there = MAP_FAILED;
    if (childs) {
        phase = "parent: mapping at the child's new address";
        there = mmap(childs, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                     -1, 0);
        CHECK(there == childs,
              "the parent maps (MAP_FIXED_NOREPLACE) at the address of the child's new mapping: got %p, errno %d",
              (void *)there, errno);
        if (there == childs) {
            CHECK(all_bytes(there, 2 * PAGE, 0), "the parent's memory at the child's address reads zero, not the "
                                                   "child's data");
            memset(there, 0xB5, 2 * PAGE);
        }
    }
    phase = "parent: mapping new memory";
    unsigned char *ours = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ours != MAP_FAILED, "the parent's mmap after fork (errno %d)", errno);
    if (ours != MAP_FAILED) {
        CHECK(all_bytes(ours, 2 * PAGE, 0), "the parent's new memory reads zero, not the child's data");
        memset(ours, 0xB2, 2 * PAGE);
        CHECK(priv[0] == 'Q' && shared[0] == 'S', "the parent's earlier mappings are intact after its new mmap");
    }
    send_msg(out, 'b');
    phase = "parent: waiting for the child's second write";
    m = recv_msg(in);
    CHECK(m == 'c', "the child checked and rewrote its memory");
    if (ours != MAP_FAILED)
        CHECK(all_bytes(ours, 2 * PAGE, 0xB2), "the parent's new memory keeps the parent's data after the child "
                                                 "rewrote its own");
    if (there != MAP_FAILED && there == childs)
        CHECK(all_bytes(there, 2 * PAGE, 0xB5), "the parent's memory at the child's address keeps the parent's data "
                                                  "after the child rewrote its own");

    send_msg(out, 'g');
    phase = "parent: looping mmap/touch/munmap";
    long errors = loop(LOOP_ITERATIONS, 0xa5);
    CHECK(errors == 0, "the parent's %d loop iterations: %ld errors", LOOP_ITERATIONS, errors);
    if (ours != MAP_FAILED)
        CHECK(all_bytes(ours, 2 * PAGE, 0xB2), "the parent's memory survives both loops");
    CHECK(priv[0] == 'Q' && priv[PAGE] == 0, "the parent's private pages survive both loops");

    phase = "parent: collecting the child's results";
    int counts[2];
    ssize_t r;
    while ((r = read(results[0], counts, sizeof counts)) < 0 && errno == EINTR) {
    }
    int status = 0;
    phase = "parent: waiting for the child to exit";
    pid_t waited = waitpid(pid, &status, 0);
    if (r == (ssize_t)sizeof counts) {
        passed += counts[0];
        failed += counts[1];
    } else {
        CHECK(0, "the child reported its results");
    }
    if (waited == pid && WIFSIGNALED(status))
        printf("child: killed by signal %d\n", WTERMSIG(status));
    if (waited == pid && WIFEXITED(status) && WEXITSTATUS(status) != 0)
        printf("child: exit status %d\n", WEXITSTATUS(status));
    CHECK(waited == pid && WIFEXITED(status), "the child exited normally (status 0x%x)", status);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
