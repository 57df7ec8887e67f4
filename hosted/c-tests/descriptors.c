/* A shared-memory object's descriptor is a descriptor, as portable programs assume:
 * write(2) its first byte before mapping it, pread/pwrite and lseek on it, dup, dup2 and
 * fcntl(F_DUPFD) numbers that map the same object, close through any of them, poll,
 * a write past the end that the mapping then reaches, inheritance over fork, and a
 * read-only descriptor that refuses writes. Passes as a plain Linux program and
 * against memserverd. Prints "N passed, N failed". */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "check.h"

int main(void) {
    const long page = 4096;
    char name[64];
    snprintf(name, sizeof name, "descriptors_%d", (int)getpid());
    alarm(120);

    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0 && fd < 1024, "shm_open gives a small descriptor number (%d)", fd);
    if (fd < 0)
        return report();

    /* write(2) before any mapping: the object grows to one byte. */
    CHECK(write(fd, "a", 1) == 1, "write the first byte");
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 1, "fstat sees the written size (%ld)",
          (long)st.st_size);
    CHECK(lseek(fd, 0, SEEK_CUR) == 1, "the offset moved");
    CHECK(ftruncate(fd, page) == 0, "ftruncate to a page");
    char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED, "mmap two pages of the one-page object");
    if (p == MAP_FAILED)
        return report();
    CHECK(p[0] == 'a', "the mapping sees the written byte");
    p[1] = 'b';
    char buf[4] = {0};
    CHECK(pread(fd, buf, 2, 0) == 2 && memcmp(buf, "ab", 2) == 0, "pread sees the mapping's store");
    CHECK(pwrite(fd, "c", 1, 2) == 1 && p[2] == 'c', "the mapping sees pwrite");
    CHECK(lseek(fd, 0, SEEK_SET) == 0 && read(fd, buf, 3) == 3 && memcmp(buf, "abc", 3) == 0,
          "lseek and read");

    /* A write past the end makes the second page part of the object. */
    CHECK(pwrite(fd, "z", 1, page + 9) == 1, "pwrite past the end");
    CHECK(fstat(fd, &st) == 0 && st.st_size == page + 10, "the object grew (%ld)",
          (long)st.st_size);
    CHECK(p[page + 9] == 'z' && p[page] == 0, "the mapping reaches the grown page");

    /* Other numbers for the same object. */
    int d1 = dup(fd);
    int d2 = fcntl(fd, F_DUPFD, 100);
    int d3 = dup2(fd, 77);
    CHECK(d1 >= 0 && d2 >= 100 && d3 == 77, "dup, F_DUPFD, dup2 (%d %d %d)", d1, d2, d3);
    struct stat s1;
    CHECK(fstat(d2, &s1) == 0 && fstat(fd, &st) == 0 && s1.st_ino == st.st_ino,
          "a duplicate names the same object");
    CHECK(close(fd) == 0, "close the first number");
    char *q = mmap(NULL, page, PROT_READ, MAP_SHARED, d1, 0);
    CHECK(q != MAP_FAILED && q[0] == 'a' && q[2] == 'c', "a duplicate maps the object after close");
    if (q != MAP_FAILED)
        munmap(q, page);
    CHECK(close(d1) == 0 && close(d2) == 0, "close two more numbers");
    struct pollfd pf = {.fd = d3, .events = POLLIN | POLLOUT};
    CHECK(poll(&pf, 1, 0) == 1 && (pf.revents & POLLIN), "poll knows the descriptor");

    /* A forked child writes through its inherited descriptor and its inherited mapping. */
    pid_t child = fork();
    if (child == 0) {
        int ok = pwrite(d3, "k", 1, 3) == 1 && p[2] == 'c';
        p[4] = 'm';
        char *r = mmap(NULL, page, PROT_READ, MAP_SHARED, d3, 0);
        ok = ok && r != MAP_FAILED && r[3] == 'k' && r[4] == 'm';
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0,
          "the child used its inherited descriptor (status %d)", status);
    CHECK(p[3] == 'k' && p[4] == 'm', "the parent sees the child's writes");

    /* A read-only descriptor refuses writes, and a shared writable mapping. */
    int ro = shm_open(name, O_RDONLY, 0);
    CHECK(ro >= 0, "shm_open read-only");
    errno = 0;
    CHECK(write(ro, "x", 1) == -1 && errno == EBADF, "write on a read-only descriptor is EBADF");
    errno = 0;
    CHECK(mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED &&
              errno == EACCES,
          "a shared writable mapping of a read-only descriptor is EACCES");
    char *r = mmap(NULL, page, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(r != MAP_FAILED && r[3] == 'k', "a read-only mapping of it reads the object");
    if (r != MAP_FAILED)
        munmap(r, page);
    errno = 0;
    CHECK(ftruncate(ro, 2 * page) == -1 && errno == EINVAL, "ftruncate of a read-only descriptor is EINVAL");

    CHECK(close(ro) == 0 && close(d3) == 0, "close the rest");
    errno = 0;
    CHECK(write(d3, "x", 1) == -1 && errno == EBADF, "a closed number is EBADF");
    CHECK(p[0] == 'a', "the mapping outlives its descriptors");
    munmap(p, 2 * page);
    CHECK(shm_unlink(name) == 0, "shm_unlink");
    return report();
}
