#!/bin/busybox sh
# /init of the VM behind kernel-diod-compare.test.ts: mounts the 9P2000.L server reached through
# QEMU's guestfwd at 10.0.2.100:564 (aname from the kernel command line, after "aname=") as the
# squashed user nobody, and runs one command per step, printing "STEP L/<name> rc=<n>" and the
# output indented by "  | ". Outputs carry no times or inode numbers, so that two servers can be
# compared line for line. Ends with NINEP-VM-DONE and powers off.
. /bin/vm-prelude.sh
ANAME=
for arg in $(cat /proc/cmdline); do
  case "$arg" in ninep_versions=*aname=*) ANAME="${arg#*aname=}" ;; esac
done
mkdir -p /mnt
step() {
  name=$1
  shift
  out=$("$@" 2>&1)
  rc=$?
  echo "STEP L/$name rc=$rc"
  [ -n "$out" ] && echo "$out" | sed 's/^/  | /'
}
# mode, links, uid, gid, size and name of each entry
lsn() { ls -lna "$1" | awk 'NR > 1 {print $1, $2, $3, $4, $5, $NF}'; }
step mount mount -t 9p -o "trans=tcp,port=564,version=9p2000.L,uname=nobody,dfltuid=65534,dfltgid=65534,access=any,cache=none,msize=262144,aname=$ANAME" 10.0.2.100 /mnt
D=/mnt/w
step mkdir mkdir $D
step touch touch $D/f
step stat-new stat -c '%a %u %g %s %F %h' $D/f
step write sh -c "echo data > $D/f && cat $D/f"
step mkdir-sticky mkdir -m 1777 $D/d
step stat-d stat -c '%a %u %g %F %h' $D/d
step mkfifo mkfifo $D/p
step stat-p stat -c '%a %F' $D/p
step symlink ln -s target $D/l
step readlink readlink $D/l
step stat-l stat -c '%a %F %s' $D/l
step cat-dangling cat $D/l
step hardlink ln $D/f $D/hard
step nlink stat -c %h $D/f
step hardlink-dir ln $D/d $D/d2
step mv mv $D/f $D/g
step chmod-suid chmod 4755 $D/g
step stat-suid stat -c %a $D/g
step touch-date touch -d '2001-09-09 01:46:40' $D/g
step mtime stat -c '%Y' $D/g
step cp-p sh -c "cp -p $D/g $D/g2 && stat -c '%a %Y' $D/g2"
step truncate truncate -s 3 $D/g
step after-truncate stat -c '%a %s' $D/g
step sparse dd if=/dev/zero of=$D/sparse bs=1 count=1 seek=1073741824
step sparse-stat stat -c '%s %b' $D/sparse
step ls lsn $D
step chown-root chown 0 $D/g
step chgrp-root chgrp 0 $D/g
step rmdir-nonempty sh -c "touch $D/d/x && rmdir $D/d"
step removed-cwd sh -c "mkdir $D/cwd && cd $D/cwd && rmdir $D/cwd && ls -a ."
step rename-over-dir sh -c "mkdir $D/e1 $D/e2 && mv -T $D/e1 $D/e2 && ls $D | grep e"
step append sh -c "echo one >> $D/app && echo two >> $D/app && cat $D/app"
step noclobber sh -c "set -C; echo x > $D/app"
step dirwrite sh -c "echo x > $D/d"
step unlink-open sh -c "exec 3<$D/app; rm $D/app; cat <&3"
step many sh -c "mkdir $D/many && i=0; while [ \$i -lt 300 ]; do : > $D/many/file-with-a-longish-name-\$i; i=\$((i+1)); done; ls $D/many | wc -l"
step find-many sh -c "find $D/many -type f | wc -l"
step rm-many rm -rf $D/many
step long-name sh -c "mkdir $D/$(printf 'n%.0s' $(seq 1 255)) && ls $D | grep -c nnnn"
step too-long sh -c "mkdir $D/$(printf 'n%.0s' $(seq 1 256)) 2>&1 | sed 's/n*n/N/'"
step zero-mode sh -c "echo s > $D/z && chmod 0 $D/z && cat $D/z"
step noexec-dir sh -c "mkdir $D/nx && touch $D/nx/in && chmod 600 $D/nx && ls $D/nx; ls -l $D/nx/in"
step chmod-back chmod 700 $D/nx
step cp-a sh -c "mkdir -p $D/src/sub && echo a > $D/src/sub/a && ln -s sub/a $D/src/l && cp -a $D/src $D/dst && lsn $D/dst && readlink $D/dst/l"
step mv-dir-over sh -c "mkdir -p $D/m1/x $D/m2 && mv -T $D/m1 $D/m2 && ls $D/m2"
step statfs stat -f -c '%t %S %l' /mnt
step rm rm -r $D
step ls-after ls /mnt
step umount umount /mnt
echo NINEP-VM-DONE
poweroff -f
