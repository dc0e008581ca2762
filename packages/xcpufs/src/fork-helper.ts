// Program start through a small resident process. A spawn() from xcpufs forks the whole Node
// process (tens of MB of page tables copied, then torn down again by the child's exec), and the
// event loop waits for it: about 2-3 ms of a launch. The helper is a short perl script (perl-base
// is essential on Debian) a few MB in size that forks cheaply. It makes each program's pipes, forks,
// drops privileges (with supplementary groups, which spawn() cannot set), reports the pid, and
// later the raw wait status; xcpufs opens its ends of the pipes through /proc/<helper>/fd.
//
// Requests (xcpufs -> helper): u32 LE length, then NUL-separated fields:
//   S id uid gid groups cwd usercwd file argv0 nargs arg... env...
//                                                            start a program ("" uid: keep ours)
//   C id                                                     the pipes of id are open here: close yours
// Replies (helper -> xcpufs), one line each:
//   P id pid fd-stdin fd-stdout fd-stderr    forked (its session and group follow at once); the
//                                            helper's ends of the three pipes
//   F id errno                               could not make the pipes or fork
//   R id                                     answers C: the helper's ends of id's pipes are closed
//                                            (until then the program's stdout still has a reader)
// A program that cannot be started (working directory, credentials, exec) exits with the errno as
// its status after writing "FILE: No such file or directory" (the C library's text for the errno)
// on its stderr, as xcpufs reports a program spawn() could not start. A script whose #!
// interpreter is missing gets " (interpreter PATH not found)" after it.
//   X pid status                             a program ended (raw wait status)
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, constants, existsSync, openSync, readSync } from "node:fs";
import { Socket } from "node:net";
import { constants as osConstants } from "node:os";
import { getSystemErrorMap } from "node:util";

const START_REPORTS = String.raw`# ENOENT for a file that exists: the interpreter its #! line names is missing (the kernel's
# ENOENT names no file; "FILE: No such file or directory" alone sends one looking for FILE).
sub missing_interpreter {
  my ($f) = @_;
  return '' unless $!{ENOENT} && -f $f && open(my $fh, '<', $f);
  my $line = <$fh> // '';
  return $line =~ /^#!\s*(\S+)/ ? " (interpreter $1 not found)" : '';
}
# EACCES for a file on a file system mounted noexec: the mount whose point is the longest prefix of
# the file's resolved path (the latest of those mounted on one point), as noexec.ts finds it.
sub noexec_mount {
  my ($f, $errno) = @_;
  { local $! = $errno; return '' unless $!{EACCES}; }
  require Cwd;
  my $real = Cwd::realpath($f);
  return '' unless defined $real && open(my $mi, '<', '/proc/self/mountinfo');
  my ($best, $noexec) = (-1, 0);
  while (my $line = <$mi>) {
    my @f = split(/ /, $line);
    next if @f < 6;
    (my $point = $f[4]) =~ s/\\([0-7]{3})/chr(oct($1))/ge;
    next unless $point eq '/' || $real eq $point || index($real, "$point/") == 0;
    next if length($point) < $best;
    $best = length($point);
    $noexec = grep { $_ eq 'noexec' } split(/,/, $f[5]);
  }
  return $noexec ? ' (on a file system mounted noexec)' : '';
}
# A program that could not start, on its stderr: "FILE: No such file or directory" (the C
# library's text for the errno; $! is not translated outside "use locale").
sub spawn_failed {
  my ($file, $errno, $why) = @_;
  $! = $errno;
  syswrite(STDERR, "$file: $!$why\n");
}`;

/**
 * What the helper adds to "FILE: No such file or directory" for a script whose #! interpreter is missing,
 * for programs started with spawn(): " (interpreter /x/y not found)", or "".
 */
export function missingInterpreter(file: string): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
    const head = Buffer.alloc(256);
    const line = head
      .subarray(0, readSync(fd, head, 0, 256, 0))
      .toString("latin1")
      .split("\n")[0]!;
    const m = /^#!\s*(\S+)/.exec(line);
    return m ? ` (interpreter ${m[1]} not found)` : "";
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const SCRIPT = String.raw`
$0 = 'xcpufs-fork-helper'; delete $ENV{XCPUFS_FORK_HELPER};
use strict; use warnings; use POSIX (); use Fcntl qw(F_SETFL O_NONBLOCK);
binmode STDIN; binmode STDOUT; $| = 1;
# Descriptors the server itself inherited without close-on-exec are no business of the programs.
if (opendir(my $fds, '/proc/self/fd')) {
  my @stray = grep { /^\d+$/ && $_ > 2 } readdir($fds);
  closedir($fds);
  POSIX::close($_) for @stray;
}
pipe(my $wake_r, my $wake_w) or die "pipe: $!";
fcntl($_, F_SETFL, O_NONBLOCK) for $wake_r, $wake_w;
# Perl runs a signal handler between two of its own steps, not when the signal arrives: a SIGCHLD
# that lands after the last such step before select() writes to the wake pipe only once select()
# has returned, and select() may wait forever. While programs run, select() therefore also wakes
# up on its own to look for ended ones. (XCPUFS_FORK_HELPER_NO_SIGCHLD: tests show that this
# alone finds every ended program.)
$SIG{CHLD} = sub { syswrite($wake_w, "x") } unless delete $ENV{XCPUFS_FORK_HELPER_NO_SIGCHLD};
# (tests) wait this long before closing the pipes of a release
my $release_delay = delete $ENV{XCPUFS_FORK_HELPER_RELEASE_DELAY_MS} || 0;
my $RECHECK = 0.05;
my (%held, $buf, $running);
$running = 0;
$buf = '';
# A write that waits for room in a full pipe may be interrupted by SIGCHLD: it carries on.
sub reply {
  my ($line, $off) = ($_[0], 0);
  while ($off < length $line) {
    my $n = syswrite(STDOUT, $line, length($line) - $off, $off);
    if (!defined $n) { next if $!{EINTR}; exit 0 }
    $off += $n;
  }
}
${START_REPORTS}
sub reap { while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) { $running--; reply("X $pid $?\n") } }
sub start {
  my ($id, $uid, $gid, $groups, $cwd, $usercwd, $file, $argv0, $nargs, @rest) = @_;
  my @args = splice(@rest, 0, $nargs);
  my (@p, $e);
  for (1 .. 3) { pipe(my $r, my $w) or do { $e = $! + 0; last }; push @p, $r, $w }
  if ($e) { reply("F $id $e\n"); close($_) for @p; return }
  my ($in_r, $in_w, $out_r, $out_w, $err_r, $err_w) = @p;
  my $pid = fork();
  if (!defined $pid) { reply("F $id " . ($! + 0) . "\n"); close($_) for @p; return }
  $running++ if $pid;
  if ($pid == 0) {
    $SIG{CHLD} = 'DEFAULT';
    POSIX::sigprocmask(POSIX::SIG_SETMASK(), POSIX::SigSet->new());
    # Each step that fails dies with its errno. The program then "exits" with that errno as its
    # status after saying so on its stderr, as a failed spawn() is reported to clients.
    eval {
      # Until this is done, xcpufs signals the process itself (its group does not exist yet).
      POSIX::setsid();
      POSIX::dup2(fileno($in_r), 0) // die(($! + 0) . "\n");
      POSIX::dup2(fileno($out_w), 1) // die(($! + 0) . "\n");
      POSIX::dup2(fileno($err_w), 2) // die(($! + 0) . "\n");
      # The session directory is entered before the identity changes (the server made it for
      # the user); a directory the user named, after, with the user's rights, and if that fails
      # the program stays in the session directory, as the original's ignored a failing chdir.
      chdir($cwd) or die(($! + 0) . "\n");
      if ($uid ne '') {
        $! = 0;
        $) = join(' ', $gid, $gid, $groups eq '' ? () : split(/,/, $groups));
        die(($! + 0) . "\n") if $!;
        POSIX::setgid($gid) or die(($! + 0) . "\n");
        POSIX::setuid($uid) or die(($! + 0) . "\n");
      }
      chdir($usercwd) if $usercwd ne '';
      %ENV = ();
      for (@rest) { my $i = index($_, '='); $ENV{substr($_, 0, $i)} = substr($_, $i + 1) if $i > 0 }
      { no warnings 'exec'; exec { $file } $argv0, @args; }
      my $e = $! + 0;
      die($e . missing_interpreter($file) . noexec_mount($file, $e) . "\n");
    };
    my ($errno, $why) = $@ =~ /^(\d+)(.*)/ ? ($1 || 1, $2) : (1, '');
    spawn_failed($file, $errno, $why);
    POSIX::_exit($errno & 0xff);
  }
  close($_) for $in_r, $out_w, $err_w;
  # Answered at once, while the child makes its session and executes the program: whether that
  # worked shows in the status, as above.
  $held{$id} = [$in_w, $out_r, $err_r];
  reply(sprintf("P %s %d %d %d %d\n", $id, $pid, fileno($in_w), fileno($out_r), fileno($err_r)));
}
while (1) {
  my $rin = '';
  vec($rin, fileno(STDIN), 1) = 1;
  vec($rin, fileno($wake_r), 1) = 1;
  my $n = select(my $rout = $rin, undef, undef, $running > 0 ? $RECHECK : undef);
  if ($n < 0) { next if $!{EINTR}; die "select: $!" }
  if (vec($rout, fileno($wake_r), 1)) { 1 while sysread($wake_r, my $x, 256) }
  reap();
  next unless vec($rout, fileno(STDIN), 1);
  my $got = sysread(STDIN, $buf, 65536, length $buf);
  if (!defined $got) { next if $!{EINTR}; exit 0 }
  exit 0 if $got == 0;
  while (length($buf) >= 4) {
    my $len = unpack('V', $buf);
    last if length($buf) < 4 + $len;
    my @f = split(/\0/, substr($buf, 4, $len), -1);
    substr($buf, 0, 4 + $len) = '';
    my $op = shift @f;
    if ($op eq 'S') { start(@f) }
    elsif ($op eq 'C') {
      select(undef, undef, undef, $release_delay / 1000) if $release_delay;
      my $h = delete $held{$f[0]}; close($_) for @{ $h || [] }; reply("R $f[0]\n");
    }
  }
}
`;

const PERL_PATHS = ["/usr/bin/perl", "/bin/perl"];

/** perl's path, or undefined when perl is not installed. */
export function findPerl(): string | undefined {
  return PERL_PATHS.find((p) => existsSync(p));
}

/**
 * For programs started with spawn(), which enters its working directory before it drops
 * privileges: a command that, already running as the user, enters `dir` if the user may (else
 * stays where it is, as the fork helper does) and then executes `file` as `argv0` with `args`. An
 * exec that fails is reported as the fork helper reports it ("FILE: No such file or directory" on stderr,
 * the errno as exit status). Without perl, sh does it, and the program's argv[0] is then `file`.
 * `loader`: NAME=value entries (the dynamic loader's LD_ variables) set for the program only, so
 * that the host's perl or sh does not load the libraries a job staged for itself.
 */
export function enterAsUser(
  dir: string,
  file: string,
  argv0: string,
  args: string[],
  loader: string[] = [],
): [string, string[]] {
  const perl = findPerl();
  const n = String(loader.length);
  if (perl) return [perl, ["-e", ENTER_AS_USER, "--", dir, n, ...loader, file, argv0, ...args]];
  return [
    "/bin/sh",
    [
      "-c",
      'cd -- "$1" 2>/dev/null; n=$2; shift 2; while [ "$n" -gt 0 ]; do export "$1"; shift; n=$((n-1)); done; exec "$@"',
      "sh",
      dir,
      n,
      ...loader,
      file,
      ...args,
    ],
  ];
}

const ENTER_AS_USER = `
${START_REPORTS}
my ($dir, $n, @rest) = @ARGV;
for my $kv (splice(@rest, 0, $n)) { my ($k, $v) = split(/=/, $kv, 2); $ENV{$k} = $v; }
my ($file, @argv) = @rest;
chdir($dir);
{ no warnings 'exec'; exec { $file } @argv; }
my $errno = $! + 0;
spawn_failed($file, $errno, missing_interpreter($file) . noexec_mount($file, $errno));
exit(($errno & 0xff) || 1);
`;

export interface HelperSpawn {
  file: string;
  argv0: string;
  args: string[];
  /** Entered before the identity changes (the session directory). */
  cwd: string;
  /** Then entered as the new identity, if it may; else the program stays in `cwd`. */
  userCwd?: string;
  env: Record<string, string>;
  /** Switch to this identity (root only); groups are the supplementary groups. */
  uid?: number;
  gid?: number;
  groups?: number[];
}

/** A program started by the helper: its pid and xcpufs's ends of its pipes. */
export class HelperChild {
  private status: [code: number | null, signal: string | null, core: boolean] | undefined;
  private readonly listeners: Array<(code: number | null, signal: string | null, core: boolean) => void> = [];
  private markReleased!: () => void;
  /**
   * Resolves once the helper has closed its own ends of the pipes (R), or is gone: from then on
   * xcpufs's ends are the only ones, so closing stdout leaves the program's writes no reader.
   */
  readonly released = new Promise<void>((resolve) => {
    this.markReleased = resolve;
  });

  constructor(
    readonly pid: number,
    readonly stdin: Socket | null,
    readonly stdout: Socket,
    readonly stderr: Socket,
  ) {}

  /**
   * Calls `fn` once the program has ended (at once if it has): its exit may be reported in the
   * same read as its start, before whoever awaited the start had a chance to listen. `core`: a
   * signal ended it and it dumped core (the 0x80 bit of the raw wait status).
   */
  onExit(fn: (code: number | null, signal: string | null, core: boolean) => void): void {
    if (this.status) fn(...this.status);
    else this.listeners.push(fn);
  }

  /** The helper answered the release of the pipes (or is gone). */
  pipesReleased(): void {
    this.markReleased();
  }

  exited(code: number | null, signal: string | null, core = false): void {
    if (this.status) return;
    this.status = [code, signal, core];
    for (const fn of this.listeners.splice(0)) fn(code, signal, core);
  }
}

/** The program could not be started (code: ENOENT, EACCES, ...); the message is errnoText's. */
export class StartError extends Error {
  constructor(
    readonly errno: number,
    readonly code: string,
  ) {
    super(errnoText(errno));
  }
}

// libuv's texts, where they differ from the C library's beyond the capital letter.
const C_LIBRARY_TEXTS: Record<string, string> = {
  ETXTBSY: "Text file busy",
  ELOOP: "Too many levels of symbolic links",
  ENOSYS: "Function not implemented",
  E2BIG: "Argument list too long",
};
const SYSTEM_ERRORS = getSystemErrorMap();

/**
 * The C library's text for an errno, as strerror() and perror() print it in the C locale
 * ("No such file or directory"), for a program xcpufs could not start.
 */
export function errnoText(errno: number): string {
  const known = SYSTEM_ERRORS.get(-errno);
  if (!known) return `Unknown error ${errno}`;
  const [name, text] = known;
  return C_LIBRARY_TEXTS[name] ?? text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * Signals the process group of a program the helper started, or the program itself while it has
 * no group yet (the helper answers at the fork; the child makes its group a moment later). Only
 * for a program not yet reported ended: its pid cannot have been reused.
 */
export function signalStarted(pid: number, sig: NodeJS.Signals | number = "SIGKILL"): void {
  try {
    process.kill(-pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") return;
    try {
      process.kill(pid, sig);
    } catch {}
  }
}

const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));
const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

export interface ForkHelperOptions {
  /** The native helper's binary (native-helper.ts): used instead of the perl script. */
  native?: string;
  /**
   * false: the helper does not listen for SIGCHLD, and finds ended programs only by looking for
   * them while programs run (tests: that way alone finds them all).
   */
  childSignals?: boolean;
}

export class ForkHelper {
  private readonly proc: ChildProcess;
  private readonly pending = new Map<
    string,
    { req: HelperSpawn; resolve(c: HelperChild): void; reject(e: Error): void }
  >();
  private readonly children = new Map<number, HelperChild>();
  /** Started programs whose pipes the helper has been asked to let go of (C sent, R not yet). */
  private readonly releasing = new Map<string, HelperChild>();
  private nextId = 1;
  private lines = "";
  private deadFlag = false;

  /**
   * Starts the helper: the native one when `opts.native` names it, else the perl script; undefined
   * when neither is there (no perl).
   */
  static start(
    log?: { warn(o: object, msg?: string): void },
    opts: ForkHelperOptions = {},
  ): ForkHelper | undefined {
    if (opts.native) return new ForkHelper("native", opts.native, log, opts);
    const perl = findPerl();
    return perl ? new ForkHelper("perl", perl, log, opts) : undefined;
  }

  private constructor(
    /** Which helper runs: the C program or the perl script. */
    readonly kind: "native" | "perl",
    file: string,
    private readonly log?: { warn(o: object, msg?: string): void },
    opts: ForkHelperOptions = {},
  ) {
    // Its own environment is nobody's business: the programs get theirs with each request.
    // The script travels in the environment, not on the command line, so that ps shows a name.
    const env: NodeJS.ProcessEnv = {
      PATH: "/usr/bin:/bin",
      ...(opts.childSignals === false ? { XCPUFS_FORK_HELPER_NO_SIGCHLD: "1" } : {}),
      // Tests: the helper holds released pipes this long (the window in which a program's stdout
      // still has a reader after `close stdout`).
      ...(process.env.XCPUFS_FORK_HELPER_RELEASE_DELAY_MS
        ? { XCPUFS_FORK_HELPER_RELEASE_DELAY_MS: process.env.XCPUFS_FORK_HELPER_RELEASE_DELAY_MS }
        : {}),
    };
    this.proc =
      kind === "native"
        ? spawn(file, [], { stdio: ["pipe", "pipe", "inherit"], env, argv0: "xcpufs-fork-helper" })
        : spawn(file, ["-e", "eval $ENV{XCPUFS_FORK_HELPER}; die $@ if $@"], {
            stdio: ["pipe", "pipe", "inherit"],
            env: { ...env, XCPUFS_FORK_HELPER: SCRIPT },
          });
    this.proc.stdout!.setEncoding("latin1");
    this.proc.stdout!.on("data", (d: string) => this.onData(d));
    this.proc.stdin!.on("error", () => {});
    this.proc.on("error", (err) => this.died(err));
    this.proc.on("exit", (code, sig) => this.died(new Error(`fork helper exited (${sig ?? code})`)));
    // It must not keep xcpufs alive on its own.
    this.proc.unref();
    (this.proc.stdout as Socket).unref?.();
    (this.proc.stdin as unknown as Socket).unref?.();
  }

  /** False once the helper is gone; programs are then started by spawn() again. */
  get alive(): boolean {
    return !this.deadFlag;
  }

  spawn(req: HelperSpawn): Promise<HelperChild> {
    if (this.deadFlag) return Promise.reject(new Error("fork helper is gone"));
    const id = String(this.nextId++);
    const fields = [
      "S",
      id,
      req.uid === undefined ? "" : String(req.uid),
      String(req.gid ?? req.uid ?? ""),
      (req.groups ?? []).join(","),
      req.cwd,
      req.userCwd ?? "",
      req.file,
      req.argv0,
      String(req.args.length),
      ...req.args,
      ...Object.entries(req.env).map(([k, v]) => `${k}=${v}`),
    ];
    if (fields.some((f) => f.includes("\0"))) return Promise.reject(new Error("a NUL byte in an argument"));
    return new Promise((resolve, reject) => {
      this.pending.set(id, { req, resolve, reject });
      this.send(fields);
    });
  }

  /** Ends the helper (programs it started keep running; xcpufs ends them itself). */
  close(): void {
    this.deadFlag = true;
    this.proc.stdin?.end();
  }

  private send(fields: string[]) {
    const body = Buffer.from(fields.join("\0"));
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32LE(body.length, 0);
    this.proc.stdin!.write(Buffer.concat([head, body]));
  }

  private onData(d: string) {
    this.lines += d;
    let nl = this.lines.indexOf("\n");
    while (nl >= 0) {
      const line = this.lines.slice(0, nl);
      this.lines = this.lines.slice(nl + 1);
      this.onLine(line.split(" "));
      nl = this.lines.indexOf("\n");
    }
  }

  private onLine([kind, a, b, ...rest]: string[]) {
    if (kind === "R") {
      this.releasing.get(a ?? "")?.pipesReleased();
      this.releasing.delete(a ?? "");
      return;
    }
    if (kind === "X") {
      const pid = Number(a);
      const child = this.children.get(pid);
      if (!child) return;
      this.children.delete(pid);
      const status = Number(b);
      const sig = status & 0x7f;
      if (sig === 0) child.exited((status >> 8) & 0xff, null);
      else child.exited(null, SIGNAL_NAMES.get(sig) ?? `SIG${sig}`, (status & 0x80) !== 0);
      return;
    }
    const p = this.pending.get(a ?? "");
    if (!p) return;
    this.pending.delete(a!);
    if (kind === "F") {
      const errno = Number(b);
      p.reject(new StartError(errno, ERRNO_NAMES.get(errno) ?? `errno ${errno}`));
      return;
    }
    // P id pid in out err
    const pid = Number(b);
    const [inFd, outFd, errFd] = rest.map(Number) as [number, number, number];
    // Ends opened so far: closed again when a later one cannot be opened (EMFILE).
    const opened: Socket[] = [];
    const open = (fd: number, mode: number) => {
      const s = this.openEnd(fd, mode);
      if (s) opened.push(s);
      return s;
    };
    try {
      const child = new HelperChild(
        pid,
        open(inFd, constants.O_WRONLY),
        open(outFd, constants.O_RDONLY)!,
        open(errFd, constants.O_RDONLY)!,
      );
      this.children.set(pid, child);
      this.releasing.set(a!, child);
      p.resolve(child);
    } catch (err) {
      for (const s of opened) s.destroy();
      signalStarted(pid);
      p.reject(err as Error);
    } finally {
      this.send(["C", a!]);
    }
  }

  /**
   * xcpufs's own descriptor for one of the helper's pipe ends, as a socket-like stream. Opened
   * non-blocking: a pipe opened through /proc behaves like a FIFO, and the program may be gone
   * already (then its stdin has no reader: ENXIO, and there is nothing to feed).
   */
  private openEnd(fd: number, mode: number): Socket | null {
    let own: number;
    try {
      own = openSync(`/proc/${this.proc.pid}/fd/${fd}`, mode | constants.O_NONBLOCK);
    } catch (err) {
      if (mode === constants.O_WRONLY && (err as NodeJS.ErrnoException).code === "ENXIO") return null;
      throw err;
    }
    try {
      return new Socket({
        fd: own,
        readable: mode === constants.O_RDONLY,
        writable: mode === constants.O_WRONLY,
      });
    } catch (err) {
      closeSync(own);
      throw err;
    }
  }

  private died(err: Error) {
    if (this.deadFlag && this.pending.size === 0 && this.children.size === 0 && this.releasing.size === 0)
      return;
    if (!this.deadFlag) this.log?.warn({ err }, "fork helper gone; programs start with spawn() from now on");
    this.deadFlag = true;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    // A helper that is gone holds no pipe ends.
    for (const c of this.releasing.values()) c.pipesReleased();
    this.releasing.clear();
    // Their exit would never be reported: end them, and report them ended.
    for (const [pid, child] of this.children) {
      signalStarted(pid);
      child.exited(null, "SIGKILL");
    }
    this.children.clear();
  }
}
