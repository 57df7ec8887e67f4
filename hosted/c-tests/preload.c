/* An ordinary program, built WITHOUT memserver's header: run under
 * LD_PRELOAD=libmemserver_preload.so its memory calls are served by memserverd.
 * It prints the addresses it was given ("anon=0x...", "shm=0x...", "hinted=0x...",
 * "fixed=0x...") so the runner can tell the server's window from the host's, and
 * checks that each call behaves as Linux's does. As a plain Linux program it passes too.
 *
 *   preload [--hold FILE]   the calls; with --hold, prints "holding" once its shm object
 *                           is mapped and waits until FILE exists
 *   preload rlimit          the lock and address-space limits follow the process's own
 *                           RLIMIT_MEMLOCK and RLIMIT_AS (as an unprivileged user: root
 *                           is not limited)
 * Prints "N passed, N failed". */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include "check.h"

#define PAGE 4096L

static void wait_for_file(const char *path) {
    struct stat st;
    while (stat(path, &st) != 0)
        usleep(10000);
}

static int calls(const char *hold) {
    /* A new anonymous mapping without an address. */
    char *a = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED, "mmap anonymous");
    if (a == MAP_FAILED)
        return report();
    printf("anon=%p\n", (void *)a);
    for (int i = 0; i < 4; i++)
        a[i * PAGE] = (char)(i + 1);
    CHECK(mprotect(a, PAGE, PROT_READ) == 0, "mprotect read-only");
    CHECK(a[0] == 1, "still readable");
    CHECK(mprotect(a, PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect writable again");
    CHECK(mlock(a + PAGE, PAGE) == 0, "mlock of the mapping");
    CHECK(munlock(a + PAGE, PAGE) == 0, "munlock of the mapping");
    CHECK(madvise(a + 3 * PAGE, PAGE, MADV_DONTNEED) == 0 && a[3 * PAGE] == 0,
          "MADV_DONTNEED gives zeros");
    CHECK(msync(a, 4 * PAGE, MS_SYNC) == 0, "msync");

    /* Grown with mremap: its bytes move with it. */
    char *g = mremap(a, 4 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
    CHECK(g != MAP_FAILED && g[PAGE] == 2 && g[2 * PAGE] == 3, "mremap keeps the bytes");
    if (g != MAP_FAILED)
        a = g;
    printf("grown=%p\n", (void *)a);

    /* A shm object, sized, mapped shared, described by fstat. */
    char name[64];
    snprintf(name, sizeof name, "/preload-%d", (int)getpid());
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0, "shm_open");
    CHECK(ftruncate(fd, 2 * PAGE) == 0, "ftruncate");
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 2 * PAGE, "fstat says its size");
    char *s = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(s != MAP_FAILED, "mmap the shm object");
    if (s != MAP_FAILED) {
        strcpy(s, "shared");
        printf("shm=%p\n", (void *)s);
    }
    char *s2 = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
    CHECK(s2 != MAP_FAILED && strcmp(s2, "shared") == 0, "a second mapping sees the bytes");
    fflush(stdout);
    if (hold) {
        put("holding\n");
        wait_for_file(hold);
    }

    /* A child shares the object and copies the private memory. */
    a[0] = 'p';
    pid_t pid = fork();
    if (pid == 0) {
        int ok = s != MAP_FAILED && strcmp(s, "shared") == 0 && a[PAGE] == 2;
        if (s != MAP_FAILED)
            strcpy(s, "child");
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0, "the child saw the object and its private copy");
    CHECK(s != MAP_FAILED && strcmp(s, "child") == 0, "the child's write to the object");

    if (s2 != MAP_FAILED)
        CHECK(munmap(s2, 2 * PAGE) == 0, "munmap the second mapping");
    if (s != MAP_FAILED)
        CHECK(munmap(s, 2 * PAGE) == 0, "munmap the object");
    CHECK(close(fd) == 0, "close the shm fd");
    CHECK(shm_unlink(name) == 0, "shm_unlink");
    errno = 0;
    CHECK(shm_unlink(name) == -1 && errno == ENOENT, "shm_unlink again is ENOENT");

    /* The program's own memory (libc's heap, its stack) is the host's: mlock works. */
    char *m = malloc(1 << 20);
    CHECK(m != NULL && mlock(m, 1 << 16) == 0, "mlock of malloc'd memory");
    CHECK(m != NULL && munlock(m, 1 << 16) == 0, "munlock of malloc'd memory");
    char on_stack[64];
    CHECK(mlock(on_stack, sizeof on_stack) == 0 && munlock(on_stack, sizeof on_stack) == 0,
          "mlock of the stack");
    free(m);

    /* A hint far from where anything lives, and MAP_FIXED over it: the host's. */
    void *hint = (void *)(uintptr_t)0x100000000000ULL;
    char *h = mmap(hint, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(h != MAP_FAILED, "mmap with a hint");
    printf("hinted=%p\n", (void *)h);
    if (h != MAP_FAILED) {
        h[0] = 1;
        char *f = mmap(h, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                       -1, 0);
        CHECK(f == h && f[0] == 0, "MAP_FIXED over it gives fresh zeros");
        printf("fixed=%p\n", (void *)f);
        CHECK(munmap(h, PAGE) == 0, "munmap it");
    }

    /* mlockall locks both parts, munlockall unlocks them. */
    CHECK(mlockall(MCL_CURRENT) == 0, "mlockall(MCL_CURRENT)");
    CHECK(munlockall() == 0, "munlockall");

    /* Linux's errnos. */
    errno = 0;
    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED &&
              errno == EINVAL, "a zero length is EINVAL");
    errno = 0;
    CHECK(mmap(NULL, PAGE, PROT_READ, MAP_SHARED, 12345, 0) == MAP_FAILED && errno == EBADF,
          "a closed fd is EBADF");
    CHECK(munmap(a, 64 * PAGE) == 0, "munmap the grown mapping");
    return report();
}

static void set_soft(int resource, rlim_t v) {
    struct rlimit r;
    getrlimit(resource, &r);
    r.rlim_cur = v;
    if (setrlimit(resource, &r) != 0)
        printf("setrlimit(%d, %lu) failed (errno %d)\n", resource, (unsigned long)v, errno);
}

static long vm_size(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

static int rlimit(void) {
    int root = geteuid() == 0;
    struct rlimit start;
    getrlimit(RLIMIT_MEMLOCK, &start);
    printf("uid=%d memlock=%ld\n", (int)geteuid(), (long)start.rlim_cur);
    char *a = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED, "mmap");
    if (a == MAP_FAILED)
        return report();
    printf("anon=%p\n", (void *)a);
    char *m = malloc(1 << 20);

    /* The runner starts us with RLIMIT_MEMLOCK 0: read when we connected. */
    errno = 0;
    int r = mlock(a, PAGE);
    CHECK(root ? r == 0 : r == -1 && errno == EPERM, "mlock with RLIMIT_MEMLOCK 0 at start");
    errno = 0;
    r = mlock(m, PAGE);
    CHECK(root ? r == 0 : r == -1 && errno == EPERM, "host mlock with RLIMIT_MEMLOCK 0");
    munlock(a, PAGE);
    munlock(m, PAGE);

    /* Raised by the program: 16 pages may be locked, 32 more may not. */
    set_soft(RLIMIT_MEMLOCK, 16 * PAGE);
    CHECK(mlock(a, 8 * PAGE) == 0, "mlock within a raised limit");
    errno = 0;
    r = mlock(a + 8 * PAGE, 32 * PAGE);
    CHECK(root ? r == 0 : r == -1 && errno == ENOMEM, "mlock past the raised limit");
    munlock(a, 64 * PAGE);

    /* Lowered to 0 again: EPERM, also for mlockall and MAP_LOCKED. */
    set_soft(RLIMIT_MEMLOCK, 0);
    errno = 0;
    r = mlock(a, PAGE);
    CHECK(root ? r == 0 : r == -1 && errno == EPERM, "mlock after setrlimit 0");
    munlock(a, PAGE);
    errno = 0;
    r = mlockall(MCL_CURRENT);
    CHECK(root ? r == 0 : r == -1 && errno == EPERM, "mlockall after setrlimit 0");
    munlockall();
    errno = 0;
    void *l = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_LOCKED, -1, 0);
    CHECK(root ? l != MAP_FAILED : l == MAP_FAILED && errno == EPERM,
          "MAP_LOCKED after setrlimit 0");

    /* RLIMIT_AS: 256 MiB above what the process holds; 1 GiB more is ENOMEM. */
    struct rlimit as;
    getrlimit(RLIMIT_AS, &as);
    set_soft(RLIMIT_AS, (rlim_t)(vm_size() + (256L << 20)));
    errno = 0;
    void *big = mmap(NULL, 1L << 30, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(big == MAP_FAILED && errno == ENOMEM, "1 GiB past RLIMIT_AS is ENOMEM");
    void *small = mmap(NULL, 16L << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(small != MAP_FAILED, "16 MiB within RLIMIT_AS");
    set_soft(RLIMIT_AS, as.rlim_cur);
    big = mmap(NULL, 1L << 30, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(big != MAP_FAILED, "1 GiB once RLIMIT_AS is back");
    free(m);
    return report();
}

int main(int argc, char **argv) {
    alarm(120);
    if (argc > 1 && strcmp(argv[1], "rlimit") == 0)
        return rlimit();
    const char *hold = argc > 2 && strcmp(argv[1], "--hold") == 0 ? argv[2] : NULL;
    return calls(hold);
}
