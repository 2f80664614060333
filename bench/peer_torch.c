/* PyTorch as a peer: torch_bench.py runs as a server in a child process
 * for the whole run, and bnorm-bench sends it one request per line over a
 * pipe (the protocol is in torch_bench.py's docstring). It checks its
 * outputs against the samples of bnorm's that bench_write_reference left
 * in the work directory, and times blocks of repetitions when asked, so
 * that PyTorch takes its turn in the same rounds as bnorm and oneDNN. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The longest a request may take: importing PyTorch, or timing a block of
 * the slowest case, takes seconds; a server silent this long has hung. */
enum { REPLY_TIMEOUT_MS = 300 * 1000 };

struct bench_torch {
  pid_t pid;
  FILE *commands; /* to the server */
  FILE *replies;  /* from it */
  char *line;     /* the last reply */
  size_t line_cap;
  bool gone;      /* a request failed: the server is not asked again */
};

static int spawn(bench_torch *t, const bench_torch_options *o, char *err,
                 size_t errlen) {
  int commands[2], replies[2];
  if (pipe(commands) != 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    return -1;
  }
  if (pipe(replies) != 0) {
    snprintf(err, errlen, "pipe: %s", strerror(errno));
    close(commands[0]);
    close(commands[1]);
    return -1;
  }
  char command_fd[16], reply_fd[16], scrub[32], eps[32], momentum[32],
      tol_y[32], tol_dx[32], tol_p[32];
  snprintf(command_fd, sizeof command_fd, "%d", commands[0]);
  snprintf(reply_fd, sizeof reply_fd, "%d", replies[1]);
  snprintf(scrub, sizeof scrub, "%zu", o->scrub_bytes);
  snprintf(eps, sizeof eps, "%.17g", o->epsilon);
  snprintf(momentum, sizeof momentum, "%.17g", o->momentum);
  snprintf(tol_y, sizeof tol_y, "%.17g", BENCH_TOL_Y);
  snprintf(tol_dx, sizeof tol_dx, "%.17g", BENCH_TOL_DX);
  snprintf(tol_p, sizeof tol_p, "%.17g", BENCH_TOL_PARAM);
  char *const argv[] = {
      (char *)o->python, (char *)o->script,
      "--shapes", (char *)o->shapes_path, "--workdir", (char *)o->workdir,
      "--command-fd", command_fd, "--reply-fd", reply_fd,
      "--scrub-bytes", scrub, "--epsilon", eps, "--momentum", momentum,
      "--tol-y", tol_y, "--tol-dx", tol_dx, "--tol-param", tol_p,
      "--pages", o->huge_pages ? "huge" : "system", NULL};
  fflush(stdout);
  fflush(stderr);
  t->pid = fork();
  if (t->pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    for (int i = 0; i < 2; i++) {
      close(commands[i]);
      close(replies[i]);
    }
    return -1;
  }
  if (t->pid == 0) {
    /* The server must not hold the parent's ends: it would never see the
     * end of its command pipe. */
    close(commands[1]);
    close(replies[0]);
    execvp(argv[0], argv);
    fprintf(stderr, "bnorm-bench: cannot run %s: %s\n", argv[0],
            strerror(errno));
    _exit(127);
  }
  close(commands[0]);
  close(replies[1]);
  t->commands = fdopen(commands[1], "w");
  t->replies = fdopen(replies[0], "r");
  if (!t->commands || !t->replies) {
    snprintf(err, errlen, "fdopen: %s", strerror(errno));
    if (t->commands) fclose(t->commands); else close(commands[1]);
    if (t->replies) fclose(t->replies); else close(replies[0]);
    t->commands = t->replies = NULL;
    return -1;
  }
  return 0;
}

/* Reads one reply line into t->line (without its newline). Each request
 * has one reply line, so the stream's buffer is empty while one is
 * awaited, and poll on its descriptor sees what getline would wait for. */
static int read_reply(bench_torch *t) {
  struct pollfd ready = {fileno(t->replies), POLLIN, 0};
  int polled;
  while ((polled = poll(&ready, 1, REPLY_TIMEOUT_MS)) < 0 && errno == EINTR) {
  }
  if (polled <= 0) {
    fprintf(stderr, "bnorm-bench: PyTorch did not answer within %d s; "
            "stopping it\n", REPLY_TIMEOUT_MS / 1000);
    t->gone = true;
    return -1;
  }
  ssize_t n = getline(&t->line, &t->line_cap, t->replies);
  if (n <= 0) {
    t->gone = true;
    return -1;
  }
  t->line[strcspn(t->line, "\n")] = '\0';
  return 0;
}

static int request(bench_torch *t, const char *command) {
  if (t->gone) return -1;
  if (fprintf(t->commands, "%s\n", command) < 0 || fflush(t->commands) != 0) {
    t->gone = true;
    return -1;
  }
  return read_reply(t);
}

int bench_torch_start(const bench_torch_options *o, bench_torch **out,
                      char *version, size_t version_len, char *err,
                      size_t errlen) {
  *out = NULL;
  /* A server that dies makes writes fail with EPIPE instead of killing
   * the benchmark. */
  signal(SIGPIPE, SIG_IGN);
  bench_torch *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (spawn(t, o, err, errlen) != 0) {
    free(t);
    return -1;
  }
  bench_cpu_track_child(t->pid);
  if (read_reply(t) != 0 || strncmp(t->line, "hello ", 6) != 0) {
    snprintf(err, errlen, "%s %s did not start (see its messages above)",
             o->python, o->script);
    bench_torch_stop(t);
    return -1;
  }
  snprintf(version, version_len, "%s", t->line + 6);
  *out = t;
  return 0;
}

int bench_torch_case(bench_torch *t, size_t shape_index, bench_pass pass,
                     int threads, double min_rep_s, char *status,
                     size_t status_len, double *err, int *calls) {
  char command[128];
  snprintf(command, sizeof command, "case %zu %s %d %.9g", shape_index,
           bench_pass_name(pass), threads, min_rep_s);
  char word[32];
  snprintf(status, status_len, "error");
  *err = NAN;
  *calls = 0;
  if (request(t, command) != 0 ||
      sscanf(t->line, "%31s %lf %d", word, err, calls) != 3)
    return -1;
  snprintf(status, status_len, "%s", word);
  return 0;
}

int bench_torch_time(bench_torch *t, int warmup, int count, double *seconds) {
  char command[64];
  snprintf(command, sizeof command, "time %d %d", warmup, count);
  if (request(t, command) != 0 || strncmp(t->line, "ok", 2) != 0) return -1;
  const char *p = t->line + 2;
  for (int i = 0; i < count; i++) {
    char *end;
    seconds[i] = strtod(p, &end);
    if (end == p || !(seconds[i] > 0)) return -1;
    p = end;
  }
  return 0;
}

void bench_torch_stop(bench_torch *t) {
  if (!t) return;
  /* The end of the command pipe ends a server that works; one that failed
   * a request may hang or ignore it. */
  if (t->gone) kill(t->pid, SIGKILL);
  if (t->commands) fclose(t->commands);
  if (t->replies) fclose(t->replies);
  int status;
  while (waitpid(t->pid, &status, 0) < 0 && errno == EINTR) {
  }
  bench_cpu_track_child(0);
  free(t->line);
  free(t);
}
