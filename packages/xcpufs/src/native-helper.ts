// The fork helper as a small C program, compiled with the node's C compiler when a server starts
// and finds no binary of this source in its per-user cache. It speaks the perl script's protocol
// (fork-helper.ts) and does the same steps in the same order, but it is a process of a few dozen
// KB that starts each program with vfork(), where perl's forked child writes to (and so copies)
// many of the interpreter's pages before it gets to exec: a job's round trip about 7 ms shorter on
// a small virtual machine (README). Without a compiler, or when the build fails, xcpufs uses the
// perl script.
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export const NATIVE_SOURCE = String.raw`/* xcpufs fork helper, native build (see native-helper.ts). stdin: requests from xcpufs; stdout:
 * one reply line each; stderr: xcpufs's own. XCPUFS_FORK_HELPER_NO_SIGCHLD=1: ended programs are
 * found only by looking every 50 ms while programs run (tests: that alone finds them all). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

struct held {
	char id[32];
	int fds[3];
};

static struct held *held;
static size_t nheld, capheld;
static int running;
/* XCPUFS_FORK_HELPER_RELEASE_DELAY_MS (tests): wait this long before closing released pipes. */
static long release_delay_ms;

static void *grow(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		static const char msg[] = "xcpufs-fork-helper: out of memory\n";
		(void)!write(2, msg, sizeof msg - 1);
		_exit(1);
	}
	return q;
}

/* A whole reply line; xcpufs gone: nothing left to do. */
static void reply(const char *line)
{
	size_t len = strlen(line), off = 0;
	while (off < len) {
		ssize_t n = write(1, line + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(0);
		}
		off += (size_t)n;
	}
}

static void close_strays(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	int *fds = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end || end == e->d_name || fd <= 2 || fd == self)
			continue;
		fds = grow(fds, (n + 1) * sizeof *fds);
		fds[n++] = (int)fd;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	free(fds);
}

/* Appends the string src to the NUL-terminated text in out (size bytes), cut to fit. No library
 * call that could allocate: the child of vfork() shares the helper's memory until it executes. */
static void append(char *out, size_t size, const char *src)
{
	size_t len = strlen(out);
	while (*src && len + 1 < size)
		out[len++] = *src++;
	out[len] = 0;
}

/* " (interpreter PATH not found)" for a script whose #! interpreter is missing, else "". */
static void missing_interpreter(const char *file, char *out, size_t size)
{
	out[0] = 0;
	struct stat st;
	if (stat(file, &st) != 0 || !S_ISREG(st.st_mode))
		return;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return;
	char head[256];
	ssize_t n = read(fd, head, sizeof head - 1);
	close(fd);
	if (n < 2 || head[0] != '#' || head[1] != '!')
		return;
	head[n] = 0;
	char *p = head + 2;
	while (*p == ' ' || *p == '\t')
		p++;
	size_t len = strcspn(p, " \t\r\n");
	if (len == 0)
		return;
	p[len] = 0;
	append(out, size, " (interpreter ");
	append(out, size, p);
	append(out, size, " not found)");
}

/* " (on a file system mounted noexec)" for an EACCES of a file on such a mount, else "". */
static void noexec_mount(const char *file, int err, char *out, size_t size)
{
	struct statfs sf;
	if (err == EACCES && statfs(file, &sf) == 0 && (sf.f_flags & ST_NOEXEC))
		append(out, size, " (on a file system mounted noexec)");
}

/* In the child: "FILE: <the errno's text>" for a program it could not start, then the errno as status.
 * One write, built without allocating (see append). */
static _Noreturn void start_failed(const char *file, int err, int check_interpreter)
{
	char why[300] = "";
	if (check_interpreter && err == ENOENT)
		missing_interpreter(file, why, sizeof why);
	noexec_mount(file, err, why, sizeof why);
	/* The C library's text without translation, as perror() prints it in the C locale. */
	const char *text = strerrordesc_np(err);
	char unknown[40] = "Unknown error ";
	if (!text) {
		char digits[12];
		int i = sizeof digits - 1;
		unsigned v = (unsigned)err;
		digits[i] = 0;
		do
			digits[--i] = (char)('0' + v % 10);
		while ((v /= 10) && i > 0);
		append(unknown, sizeof unknown, digits + i);
		text = unknown;
	}
	struct iovec iov[] = {
		{ (void *)file, strlen(file) }, { ": ", 2 }, { (void *)text, strlen(text) },
		{ why, strlen(why) }, { "\n", 1 },
	};
	(void)!writev(2, iov, sizeof iov / sizeof iov[0]);
	_exit((err & 0xff) ? (err & 0xff) : 1);
}

/* The child's part of a start, up to exec. Only system calls and allocation-free code: after
 * vfork() this runs in the helper's memory while the helper waits. */
static _Noreturn void child(const char *file, char **argv, char **envp, int in_r, int out_w, int err_w,
			    const char *cwd, const char *usercwd, long uid, long gid, gid_t *groups, size_t ngroups)
{
	sigset_t none;
	sigemptyset(&none);
	signal(SIGCHLD, SIG_DFL);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Until this is done, xcpufs signals the process itself (its group does not exist yet). */
	setsid();
	if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
		start_failed(file, errno, 0);
	/* The session directory is entered before the identity changes (the server made it for
	 * the user); a directory the user named, after, with the user's rights, and if that fails
	 * the program stays in the session directory, as the original's ignored a failing chdir. */
	if (chdir(cwd) != 0)
		start_failed(file, errno, 0);
	if (uid >= 0) {
		if (setgroups(ngroups, groups) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0)
			start_failed(file, errno, 0);
	}
	if (*usercwd)
		(void)!chdir(usercwd);
	/* execvp() looks the program up in the PATH of the environment it is given to run with. */
	environ = envp;
	execvp(file, argv);
	start_failed(file, errno, 1);
}

static int parse_id(const char *s, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* S id uid gid groups cwd usercwd file argv0 nargs arg... env... */
static void start(char **f, size_t nf)
{
	char line[128];
	if (nf < 9)
		return;
	const char *id = f[0], *uid_s = f[1], *gid_s = f[2], *groups_s = f[3];
	const char *cwd = f[4], *usercwd = f[5], *file = f[6], *argv0 = f[7];
	long nargs;
	if (parse_id(f[8], &nargs) || (size_t)nargs > nf - 9) {
		snprintf(line, sizeof line, "F %s %d\n", id, EINVAL);
		reply(line);
		return;
	}
	long uid = -1, gid = -1;
	if (*uid_s && (parse_id(uid_s, &uid) || parse_id(gid_s, &gid))) {
		snprintf(line, sizeof line, "F %s %d\n", id, EINVAL);
		reply(line);
		return;
	}
	/* Built before the fork: the child only makes system calls. */
	char **argv = grow(NULL, ((size_t)nargs + 2) * sizeof *argv);
	argv[0] = (char *)argv0;
	for (long i = 0; i < nargs; i++)
		argv[i + 1] = f[9 + i];
	argv[nargs + 1] = NULL;
	/* NAME=value entries; a name given twice keeps its last value (as perl's %ENV did). */
	size_t nenv = 0, first = 9 + (size_t)nargs;
	char **envp = grow(NULL, (nf - first + 1) * sizeof *envp);
	for (size_t i = first; i < nf; i++) {
		char *eq = strchr(f[i], '=');
		if (!eq || eq == f[i])
			continue;
		size_t klen = (size_t)(eq - f[i]) + 1, j;
		for (j = 0; j < nenv; j++)
			if (strncmp(envp[j], f[i], klen) == 0)
				break;
		envp[j] = f[i];
		if (j == nenv)
			nenv++;
	}
	envp[nenv] = NULL;
	gid_t *groups = NULL;
	size_t ngroups = 0;
	if (uid >= 0) {
		groups = grow(NULL, (strlen(groups_s) / 2 + 2) * sizeof *groups);
		groups[ngroups++] = (gid_t)gid;
		for (const char *p = groups_s; *p;) {
			char *end;
			unsigned long g = strtoul(p, &end, 10);
			if (end == p)
				break;
			groups[ngroups++] = (gid_t)g;
			p = *end == ',' ? end + 1 : end;
		}
	}

	int p[6], err = 0;
	for (int i = 0; i < 3; i++) {
		if (pipe2(p + 2 * i, O_CLOEXEC) != 0) {
			err = errno;
			for (int j = 0; j < 2 * i; j++)
				close(p[j]);
			break;
		}
	}
	if (err) {
		snprintf(line, sizeof line, "F %s %d\n", id, err);
		reply(line);
		goto out;
	}
	int in_r = p[0], in_w = p[1], out_r = p[2], out_w = p[3], err_r = p[4], err_w = p[5];
	/* vfork(): no copy of the helper's page tables for the child to tear down again at its exec,
	 * about 0.9 ms less per program on a small virtual machine; the helper waits only until the
	 * child executes (a fraction of a millisecond). Not when the client named a directory to run
	 * in: entering it may wait on a slow or hung network file system, and the other programs'
	 * starts must not wait with it. */
	char **own_environ = environ;
	pid_t pid = *usercwd ? fork() : vfork();
	if (pid == 0)
		child(file, argv, envp, in_r, out_w, err_w, cwd, usercwd, uid, gid, groups, ngroups);
	environ = own_environ;
	if (pid < 0) {
		snprintf(line, sizeof line, "F %s %d\n", id, errno);
		reply(line);
		for (int i = 0; i < 6; i++)
			close(p[i]);
		goto out;
	}
	running++;
	close(in_r);
	close(out_w);
	close(err_w);
	/* Answered at once, while the child makes its session and executes the program: whether that
	 * worked shows in the status, as above. */
	if (nheld == capheld) {
		capheld = capheld ? capheld * 2 : 16;
		held = grow(held, capheld * sizeof *held);
	}
	struct held *h = &held[nheld++];
	snprintf(h->id, sizeof h->id, "%s", id);
	h->fds[0] = in_w;
	h->fds[1] = out_r;
	h->fds[2] = err_r;
	snprintf(line, sizeof line, "P %s %d %d %d %d\n", h->id, (int)pid, in_w, out_r, err_r);
	reply(line);
out:
	free(argv);
	free(envp);
	free(groups);
}

/* C id: xcpufs has its own ends of the pipes now. Answered once they are closed here. */
static void release(const char *id)
{
	char line[64];
	if (release_delay_ms > 0)
		poll(NULL, 0, (int)release_delay_ms);
	for (size_t i = 0; i < nheld; i++) {
		if (strcmp(held[i].id, id) != 0)
			continue;
		for (int j = 0; j < 3; j++)
			close(held[i].fds[j]);
		held[i] = held[--nheld];
		break;
	}
	snprintf(line, sizeof line, "R %.40s\n", id);
	reply(line);
}

static void reap(void)
{
	int status;
	pid_t pid;
	char line[64];
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		running--;
		snprintf(line, sizeof line, "X %d %d\n", (int)pid, status);
		reply(line);
	}
}

/* One request; body[len] is a NUL the caller added after the last field. */
static void handle(char *body, size_t len)
{
	size_t nf = 1;
	for (size_t i = 0; i < len; i++)
		nf += body[i] == 0;
	char **f = grow(NULL, nf * sizeof *f);
	f[0] = body;
	for (size_t i = 0, k = 1; i < len; i++)
		if (body[i] == 0)
			f[k++] = body + i + 1;
	if (nf > 0 && strcmp(f[0], "S") == 0)
		start(f + 1, nf - 1);
	else if (nf > 1 && strcmp(f[0], "C") == 0)
		release(f[1]);
	free(f);
}

int main(void)
{
	/* The process name ps shows (ps -C xcpufs-fork-helper), as the perl helper's. */
	prctl(PR_SET_NAME, "xcpufs-fork-helper", 0, 0, 0);
	close_strays();
	int sigchld = getenv("XCPUFS_FORK_HELPER_NO_SIGCHLD") == NULL;
	unsetenv("XCPUFS_FORK_HELPER_NO_SIGCHLD");
	const char *delay = getenv("XCPUFS_FORK_HELPER_RELEASE_DELAY_MS");
	release_delay_ms = delay ? strtol(delay, NULL, 10) : 0;
	unsetenv("XCPUFS_FORK_HELPER_RELEASE_DELAY_MS");
	signal(SIGPIPE, SIG_DFL);
	int sfd = -1;
	if (sigchld) {
		/* Delivered through a descriptor, never as an interruption: no wake-up is lost. */
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGCHLD);
		sigprocmask(SIG_BLOCK, &set, NULL);
		sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
		if (sfd < 0) {
			sigprocmask(SIG_UNBLOCK, &set, NULL);
			sigchld = 0;
		}
	}
	char *buf = NULL;
	size_t have = 0, cap = 0;
	for (;;) {
		struct pollfd pfd[2] = { { .fd = 0, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
		int n = poll(pfd, sfd >= 0 ? 2 : 1, !sigchld && running > 0 ? 50 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("xcpufs-fork-helper: poll");
			return 1;
		}
		if (sfd >= 0 && pfd[1].revents) {
			struct signalfd_siginfo si[16];
			while (read(sfd, si, sizeof si) > 0) {
			}
		}
		reap();
		if (!pfd[0].revents)
			continue;
		if (cap - have < 65536) {
			cap = have + 65536;
			buf = grow(buf, cap);
		}
		ssize_t got = read(0, buf + have, cap - have);
		if (got < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return 0;
		}
		if (got == 0)
			return 0;
		have += (size_t)got;
		size_t off = 0;
		while (have - off >= 4) {
			const unsigned char *h = (const unsigned char *)buf + off;
			size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
			if (have - off - 4 < len)
				break;
			char *body = grow(NULL, len + 1);
			memcpy(body, buf + off + 4, len);
			body[len] = 0;
			off += 4 + len;
			handle(body, len);
			free(body);
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
}
`;

/** The cached binary's name: a new source (or another machine type) is built anew. */
const BINARY = `fork-helper-${createHash("sha256").update(NATIVE_SOURCE).update(process.arch).digest("hex").slice(0, 16)}`;

/**
 * Where the binary is kept: XCPUFS_HELPER_CACHE, else $XDG_CACHE_HOME/clustermatic, else
 * ~/.cache/clustermatic. "0" turns the native helper off.
 */
export function nativeHelperDir(): string | undefined {
  const setting = process.env.XCPUFS_HELPER_CACHE;
  if (setting === "0") return undefined;
  if (setting) return setting;
  let home: string;
  try {
    home = homedir();
  } catch {
    return undefined;
  }
  const base = process.env.XDG_CACHE_HOME || (home && join(home, ".cache"));
  return base ? join(base, "clustermatic") : undefined;
}

/** A file or directory only this user could have written (xcpufs runs what it finds there as root). */
function ownedPrivately(path: string): boolean {
  try {
    const st = statSync(path);
    return st.uid === process.geteuid?.() && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/** The native helper's binary, or why there is none. */
export type NativeHelper = { path: string; why?: undefined } | { path?: undefined; why: string };

/** Builds under way or done, by cache directory. */
const builds = new Map<string, Promise<NativeHelper>>();

/**
 * The path of the native fork helper, built first if this source has not been built here yet;
 * or why it cannot be (no compiler, a failed build, a cache directory others may write), which
 * `log` hears too.
 */
export function nativeForkHelper(log?: { info(o: object, msg?: string): void }): Promise<NativeHelper> {
  const dir = nativeHelperDir();
  if (!dir) return Promise.resolve({ why: "turned off (XCPUFS_HELPER_CACHE=0, or no home directory)" });
  let built = builds.get(dir);
  if (!built) {
    built = build(dir, log);
    builds.set(dir, built);
  }
  return built;
}

async function build(dir: string, log?: { info(o: object, msg?: string): void }): Promise<NativeHelper> {
  const binary = join(dir, BINARY);
  const without = (why: string): NativeHelper => {
    log?.info(
      { dir },
      `no native fork helper: ${why}; programs start through the perl one (spawn() without perl)`,
    );
    return { why };
  };
  if (existsSync(binary)) {
    if (ownedPrivately(dir) && ownedPrivately(binary)) {
      // A cache on a file system mounted noexec: access() says so (the build's trial run would have).
      try {
        accessSync(binary, constants.X_OK);
      } catch (err) {
        return without(`${binary} cannot be executed here (${(err as NodeJS.ErrnoException).code})`);
      }
      return { path: binary };
    }
    return without(`${binary} may be written by other users`);
  }
  const cc = process.env.CC || ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].find((p) => existsSync(p));
  if (!cc) return without("no C compiler (cc, gcc or clang in /usr/bin, or $CC)");
  let work: string | undefined;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!ownedPrivately(dir)) throw new Error(`${dir} may be written by other users`);
    work = mkdtempSync(join(dir, ".build-"));
    writeFileSync(join(work, "fork-helper.c"), NATIVE_SOURCE);
    await new Promise<void>((resolve, reject) => {
      execFile(
        cc,
        ["-O2", "-o", join(work!, "fork-helper"), join(work!, "fork-helper.c")],
        { timeout: 120_000, env: { PATH: "/usr/bin:/bin", LC_ALL: "C" } },
        (err, _out, stderr) =>
          err ? reject(new Error(`${cc}: ${stderr.trim() || err.message}`)) : resolve(),
      );
    });
    // A binary that cannot run here (a cache on a noexec mount, say) is not kept.
    const check = spawnSync(join(work, "fork-helper"), [], { input: "", timeout: 10_000 });
    if (check.status !== 0)
      throw new Error(`the built helper does not run (${check.error?.message ?? check.status})`);
    chmodSync(join(work, "fork-helper"), 0o700);
    renameSync(join(work, "fork-helper"), binary);
    return { path: binary };
  } catch (err) {
    return without(`cannot build it: ${(err as Error).message}`);
  } finally {
    if (work) rmSync(work, { recursive: true, force: true });
  }
}
