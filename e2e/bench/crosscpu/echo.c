// Cross-CPU wake-up round trips (e2e/bench/crosscpu.sh): the parent, on CPU 0, writes a byte
// to a loopback TCP connection every PERIOD_NS nanoseconds (open loop: each send is due at a
// fixed time, whatever the last trip took) and the child, on CPU 1, echoes it; the parent
// reads the echo. Prints p50/p90/p99/p99.9/max of the round trip in microseconds.
//
// usage: echo [TRIPS] [PERIOD_NS]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static void check(int ok, const char *what) {
  if (!ok) {
    perror(what);
    exit(1);
  }
}

static int by_value(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  long trips = argc > 1 ? atol(argv[1]) : 160000;
  long period_ns = argc > 2 ? atol(argv[2]) : 62500;
  int one = 1;

  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  check(listener >= 0 && bind(listener, (void *)&addr, len) == 0 && listen(listener, 1) == 0 &&
            getsockname(listener, (void *)&addr, &len) == 0,
        "listen");

  if (fork() == 0) {  // the echo, on CPU 1
    pin_to(1);
    int conn = accept(listener, 0, 0);
    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char byte;
    while (read(conn, &byte, 1) == 1) write(conn, &byte, 1);
    return 0;
  }

  pin_to(0);
  int conn = socket(AF_INET, SOCK_STREAM, 0);
  check(conn >= 0 && connect(conn, (void *)&addr, len) == 0, "connect");
  setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  long long *trip_ns = malloc(trips * sizeof *trip_ns);
  check(trip_ns != NULL, "malloc");
  long long due = now_ns();
  char byte = 'x';
  for (long i = 0; i < trips; i++) {
    due += period_ns;
    struct timespec at = {due / 1000000000LL, due % 1000000000LL};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, 0);
    long long start = now_ns();
    check(write(conn, &byte, 1) == 1 && read(conn, &byte, 1) == 1, "echo");
    trip_ns[i] = now_ns() - start;
  }
  close(conn);
  wait(0);

  qsort(trip_ns, trips, sizeof *trip_ns, by_value);
  printf("round trip us: p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f\n", trip_ns[trips / 2] / 1e3,
         trip_ns[trips * 9 / 10] / 1e3, trip_ns[trips * 99 / 100] / 1e3, trip_ns[trips * 999 / 1000] / 1e3,
         trip_ns[trips - 1] / 1e3);
  return 0;
}
