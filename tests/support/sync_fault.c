/* A fault shim for the fault tests, loaded into the real binary with
 * LD_PRELOAD: it slows down and fails chosen fsync/fdatasync calls, which
 * libfiu cannot delay.
 *
 * SYNC_FAULT_DIR names a directory. Files `1`, `2`, ... `16` in it are
 * faults, used in that order, each once: "SUFFIX DELAY_MS ERRNO". The next
 * fsync or fdatasync of a file whose path ends with SUFFIX takes the lowest
 * one left (renames it to `N.taken`), sleeps DELAY_MS, then fails with
 * ERRNO, or syncs for real when ERRNO is 0. Without the variable, or with no
 * fault left, every call goes straight to the C library. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fault_for(int fd) {
    const char *dir = getenv("SYNC_FAULT_DIR");
    if (!dir) return 0;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len < 0) return 0;
    path[len] = 0;
    for (int n = 1; n <= 16; n++) {
        char ctl[4200], taken[4300], suffix[256];
        long delay_ms;
        int err;
        snprintf(ctl, sizeof ctl, "%s/%d", dir, n);
        FILE *f = fopen(ctl, "r");
        if (!f) continue;
        int got = fscanf(f, "%255s %ld %d", suffix, &delay_ms, &err);
        fclose(f);
        size_t sl = strlen(suffix);
        if (got != 3 || (size_t)len < sl || strcmp(path + len - sl, suffix) != 0)
            return 0;
        snprintf(taken, sizeof taken, "%s.taken", ctl);
        if (rename(ctl, taken) != 0) return 0; /* another thread took it */
        struct timespec pause = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        return err;
    }
    return 0;
}

int fsync(int fd) {
    static int (*real)(int);
    int err = fault_for(fd);
    if (err) {
        errno = err;
        return -1;
    }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    int err = fault_for(fd);
    if (err) {
        errno = err;
        return -1;
    }
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
