/* The calls portable programs and test suites make the way they make them: shm names
 * without the leading slash (the same object as with it), a mapping grown with mremap
 * (its bytes move with it), madvise(MADV_DONTNEED) then zeros, and the errnos Linux
 * gives for an impossible length and a closed fd, and MAP_32BIT below 2 GiB. Passes as a plain Linux program and
 * against memserverd. Prints "N passed, N failed". */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "check.h"



int main(void) {
    const long page = 4096;
    char name[64], slashed[72];
    snprintf(name, sizeof name, "portable_%d-1", (int)getpid());
    snprintf(slashed, sizeof slashed, "/%s", name);

    /* A name without a slash is the object the name with one names. */
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0, "shm_open without a leading slash");
    CHECK(ftruncate(fd, page) == 0, "ftruncate");
    char *a = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(a != MAP_FAILED, "mmap the object");
    if (a != MAP_FAILED)
        strcpy(a, "same object");
    int fd2 = shm_open(slashed, O_RDWR, 0);
    CHECK(fd2 >= 0, "shm_open the same name with a slash");
    char *b = fd2 >= 0 ? mmap(NULL, page, PROT_READ, MAP_SHARED, fd2, 0) : MAP_FAILED;
    CHECK(b != MAP_FAILED && strcmp(b, "same object") == 0, "both names reach one object");
    errno = 0;
    CHECK(shm_open(slashed, O_CREAT | O_EXCL | O_RDWR, 0600) == -1 && errno == EEXIST,
          "O_EXCL on the other spelling is EEXIST");
    CHECK(shm_unlink(slashed) == 0, "shm_unlink with a slash");
    errno = 0;
    CHECK(shm_unlink(name) == -1 && errno == ENOENT, "gone under both names");
    if (b != MAP_FAILED)
        munmap(b, page);
    if (a != MAP_FAILED)
        munmap(a, page);
    close(fd2);
    close(fd);

    /* Growing a mapping with mremap keeps its bytes, wherever it lands. */
    char *g = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(g != MAP_FAILED, "mmap to grow");
    if (g != MAP_FAILED) {
        memset(g, 'x', 2 * page);
        char *blocker = mmap(g + 2 * page, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        char *h = mremap(g, 2 * page, 16 * page, MREMAP_MAYMOVE);
        CHECK(h != MAP_FAILED, "mremap MREMAP_MAYMOVE");
        if (h != MAP_FAILED) {
            CHECK(h[0] == 'x' && h[2 * page - 1] == 'x', "the bytes moved with the mapping");
            CHECK(h[2 * page] == 0 && h[16 * page - 1] == 0, "the new part reads zero");
            h[16 * page - 1] = 'y';
            CHECK(h[16 * page - 1] == 'y', "the new part is writable");
            /* Shrink in place. */
            char *s = mremap(h, 16 * page, page, 0);
            CHECK(s == h && s[0] == 'x', "mremap shrinks in place");
            munmap(s, page);
        }
        if (blocker != MAP_FAILED)
            munmap(blocker, page);
    }

    /* MADV_DONTNEED: private anonymous memory reads zero afterwards. */
    char *d = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(d != MAP_FAILED, "mmap for madvise");
    if (d != MAP_FAILED) {
        memset(d, 7, 4 * page);
        CHECK(madvise(d + page, 2 * page, MADV_DONTNEED) == 0, "madvise MADV_DONTNEED");
        CHECK(d[0] == 7 && d[page] == 0 && d[3 * page - 1] == 0 && d[3 * page] == 7,
              "the dropped pages read zero, the others keep their bytes");
        errno = 0;
        CHECK(madvise(d, page, 12345) == -1 && errno == EINVAL, "unknown advice is EINVAL");
        munmap(d, 4 * page);
    }

    /* MAP_32BIT places below 2 GiB, as Linux does on x86-64. */
    char *low = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    CHECK(low != MAP_FAILED && (unsigned long)low + 2 * page <= 1UL << 31,
          "MAP_32BIT is below 2 GiB (%p)", (void *)low);
    if (low != MAP_FAILED) {
        low[page] = 'l';
        CHECK(low[page] == 'l' && low[0] == 0, "a MAP_32BIT mapping is memory");
        munmap(low, 2 * page);
    }

    /* Errnos Linux gives. */
    errno = 0;
    CHECK(mmap(NULL, (size_t)-4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED &&
              errno == ENOMEM,
          "an impossible length is ENOMEM");
    int closed = open("/dev/null", O_RDONLY);
    close(closed);
    errno = 0;
    CHECK(mmap(NULL, page, PROT_READ, MAP_SHARED, closed, 0) == MAP_FAILED && errno == EBADF,
          "a closed fd is EBADF");

    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
