#!/bin/busybox sh
# /init of the test VM: load the 9p modules, bring up the NIC, mount the server under test
# (reached through QEMU's guestfwd at 10.0.2.100:564) and run one command per step, printing
# "STEP <name> rc=<n>" and the output indented by "  | ". Ends with NINEP-VM-DONE and powers off.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in netfs fscache 9pnet 9pnet_fd 9p e1000; do insmod /lib/mod/$m.ko || echo "STEP insmod-$m rc=1"; done
VERSIONS=9p2000.L
for arg in $(cat /proc/cmdline); do
  case "$arg" in ninep_versions=*) VERSIONS="${arg#ninep_versions=}" ;; esac
done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
mkdir -p /mnt
step() {
  name=$1
  shift
  out=$("$@" 2>&1)
  rc=$?
  echo "STEP $V/$name rc=$rc"
  [ -n "$out" ] && echo "$out" | sed 's/^/  | /'
}
# One mount per dialect; each works in the export's subdirectory named after the dialect.
for V in $(echo "$VERSIONS" | tr , ' '); do
  step mount mount -t 9p -o "trans=tcp,port=564,version=$V,uname=root,access=any,cache=none,msize=262144" 10.0.2.100 /mnt
  D=/mnt/$V
  step ls ls -la $D
  step cat cat $D/hello.txt
  step cp cp /bin/busybox $D/copy.bin
  step cmp cmp /bin/busybox $D/copy.bin
  step mkdir mkdir -p $D/a/b
  step ln ln -s ../hello.txt $D/a/link
  step readlink readlink $D/a/link
  step cat-link cat $D/a/link
  step mv mv $D/copy.bin $D/a/moved.bin
  step ls-a ls -la $D/a
  step append sh -c "echo one >> $D/a/app.txt && echo two >> $D/a/app.txt && cat $D/a/app.txt"
  step chmod chmod 600 $D/hello.txt
  step truncate truncate -s 5 $D/hello.txt
  step stat stat -c '%a %s %F' $D/hello.txt
  step statfs stat -f -c '%S' /mnt
  step touch-date touch -d '2001-09-09 01:46:40' $D/a/app.txt
  step mtime stat -c '%Y' $D/a/app.txt
  step keep cp $D/a/app.txt $D/kept.txt
  # fids the kernel keeps (a working directory, open files) follow a rename and outlive an unlink
  step cwd-renamed sh -c "mkdir $D/r1 && echo x > $D/r1/f && cd $D/r1 && mv $D/r1 $D/r2 && cat f && echo new > n && cat $D/r2/n && cd / && rm -r $D/r2"
  step open-renamed sh -c "echo zz > $D/h && exec 3<>$D/h && mv $D/h $D/h2 && stat -L -c %s /proc/\$\$/fd/3 && chmod 600 /proc/\$\$/fd/3 && stat -c %a $D/h2 && rm $D/h2"
  step open-unlinked sh -c "echo ww > $D/u && exec 3<$D/u && rm $D/u && stat -L -c %s /proc/\$\$/fd/3 && cat <&3"
  step rm rm -r $D/a
  step ls-after ls $D
  step missing cat $D/no-such-file
  step umount umount /mnt
done
echo NINEP-VM-DONE
poweroff -f
