#!/bin/busybox sh
# /init of the xcpufs test VM: load the 9p modules, bring up the NIC, mount the xcpufs under
# test (reached through QEMU's guestfwd at 10.0.2.100:564) with the kernel's v9fs client in
# 9P2000.u, and drive it with busybox tools the way an operator does. Each step is a shell
# snippet run under `timeout`, printed as "STEP <name> rc=<n>" with its output indented by
# "  | ". Ends with NINEP-VM-DONE and powers off.
. /bin/vm-prelude.sh
mkdir -p /mnt
# A step that blocks for good (a read the server never answers) is killed, so the rest still runs.
# The session descriptors (3-6) are closed for the step: busybox timeout leaves a watcher process
# behind for up to a second, which would otherwise keep the sessions (and the mount) busy.
step() {
  name=$1
  out=$(timeout -s KILL 240 sh -c "$2" 2>&1 3<&- 4<&- 5<&- 6<&-)
  rc=$?
  echo "STEP $name rc=$rc"
  [ -n "$out" ] && echo "$out" | sed 's/^/  | /'
}
# A session lives while a fid of it is open: open clone on a shell descriptor and keep it.
# `read` stops at the end of the file (the id has no newline), so its status is 1 whatever happens.
session() {
  eval "exec $1< /mnt/clone"
  read -r sid <&"$1"
  echo "STEP clone-$1 rc=$?"
  echo "  | $sid"
}
# The options an operator types; the kernel's defaults (cache=none, msize 128 KiB in 6.1) do the rest.
step mount 'mount -t 9p -o trans=tcp,port=564,version=9p2000.u,uname=operator,access=any 10.0.2.100 /mnt'
step arch 'cat /mnt/arch'
step ls 'ls /mnt'

# 1. echo: argv, ctl exec, stdout, wait.
session 3
export A=$sid
step ls-session 'ls /mnt/$A'
step argv 'echo "echo hello from xcpufs" > /mnt/$A/argv && cat /mnt/$A/argv'
step env 'echo "GREETING=hi" >> /mnt/$A/env && cat /mnt/$A/env'
step exec 'echo "exec /bin/echo" > /mnt/$A/ctl'
step stdout 'cat /mnt/$A/stdout'
step wait 'cat /mnt/$A/wait'

# 2. A script copied into the session's fs/ and run from there (relative name = fs/).
session 4
export B=$sid
printf '#!/bin/sh\necho "script $1 in session $XCPUSID"\nexit 3\n' > /tmp/run.sh
chmod 755 /tmp/run.sh
step cp 'cp /tmp/run.sh /mnt/$B/fs/run.sh && ls -l /mnt/$B/fs'
step cmp 'cmp /tmp/run.sh /mnt/$B/fs/run.sh'
step script-argv 'echo "run.sh first" > /mnt/$B/argv'
step script-exec 'echo "exec run.sh" > /mnt/$B/ctl'
step script-stdout 'cat /mnt/$B/stdout'
step script-wait 'cat /mnt/$B/wait'

# 3. A program reading its stdin; procs shows it while it runs.
session 5
export C=$sid
step stdin-argv "echo \"sh -c 'cat; echo end' kmount-marker\" > /mnt/\$C/argv"
step stdin-exec 'echo "exec /bin/sh" > /mnt/$C/ctl'
# (the pid is out before the program has exec'd: until then procs shows the fork helper)
step procs 'for i in $(seq 30); do grep kmount-marker /mnt/procs && exit 0; sleep 1; done; exit 1'
step stdin-write 'echo "line one" > /mnt/$C/stdin && echo "line two" > /mnt/$C/stdin'
step stdin-close 'echo "close stdin" > /mnt/$C/ctl'
step stdin-stdout 'cat /mnt/$C/stdout'
step stdin-wait 'cat /mnt/$C/wait'

# 3b. The papers' way: the program copied onto the session's legacy `exec` file, run by a bare
# `exec` (cp opens it with O_TRUNC, and the kernel then sends a wstat of length and times).
session 6
export D=$sid
step legacy-cp 'cp /tmp/run.sh /mnt/$D/exec'
step legacy-argv 'echo "run.sh legacy" > /mnt/$D/argv'
step legacy-exec 'echo exec > /mnt/$D/ctl'
step legacy-stdout 'cat /mnt/$D/stdout'
step legacy-wait 'cat /mnt/$D/wait'

# 4. wipe: the directory leaves the listing at once, while the clone descriptor is still open.
step wipe 'echo wipe > /mnt/$A/ctl'
step ls-wiped 'ls /mnt'
exec 3<&- 4<&- 5<&- 6<&-
# Closing the last descriptor of a finished session ends it; listed until then (60 s at most).
step ls-end 'for i in $(seq 60); do ls /mnt | grep -qx -e "$B" -e "$C" -e "$D" || break; sleep 1; done; ls /mnt'
step umount 'for i in $(seq 30); do umount /mnt 2>/dev/null && exit 0; sleep 1; done; umount /mnt'

# 5. With cache=loose the kernel reads through the page cache and stops at the size stat reports:
# synthetic files whose content is made at open (procs, sysinfo) report 0 and read as empty.
step loose-mount 'mount -t 9p -o trans=tcp,port=564,version=9p2000.u,uname=operator,access=any,cache=loose 10.0.2.100 /mnt'
step loose-arch 'cat /mnt/arch'
step loose-sysinfo 'cat /mnt/sysinfo | wc -c'
step loose-sysinfo-dd 'dd if=/mnt/sysinfo bs=4096 count=1 iflag=direct 2>/dev/null | wc -c'
step loose-umount 'umount /mnt'
echo NINEP-VM-DONE
poweroff -f
