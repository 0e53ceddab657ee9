/* A raw HTTP test client: writes stdin's bytes to HOST:PORT (in pieces with pauses if asked),
 * prints what comes back, then "[closed]" if the server closed the connection or "[open]" if it
 * went quiet for --wait-ms. For tests of malformed requests, pipelining and timeouts.
 * Usage: httpc HOST PORT [--pieces N] [--pause-ms MS] [--wait-ms MS] */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: httpc HOST PORT [--pieces N] [--pause-ms MS] [--wait-ms MS]\n");
        return 2;
    }
    int pieces = 1, pause = 0, wait_ms = 2000;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--pieces") == 0)
            pieces = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--pause-ms") == 0)
            pause = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--wait-ms") == 0)
            wait_ms = atoi(argv[i + 1]);
    }
    size_t cap = 1 << 16, len = 0;
    char *in = malloc(cap);
    for (ssize_t r; in && (r = read(0, in + len, cap - len)) > 0;) {
        len += (size_t)r;
        if (len == cap && !(in = realloc(in, cap *= 2)))
            break;
    }
    if (!in)
        return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("httpc: connect");
        close(fd);
        free(in);
        return 1;
    }
    if (pieces < 1)
        pieces = 1;
    size_t step = (len + (size_t)pieces - 1) / (size_t)pieces;
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        if (write_all(fd, in + off, n) != 0)
            break;
        if (pause && off + n < len)
            pause_ms(pause);
    }
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, wait_ms);
        if (pr == 0) {
            printf("\n[open]\n");
            break;
        }
        ssize_t r = read(fd, buf, sizeof(buf));
        if (r <= 0) {
            printf("\n[closed]\n");
            break;
        }
        fwrite(buf, 1, (size_t)r, stdout);
    }
    close(fd);
    free(in);
    return 0;
}
