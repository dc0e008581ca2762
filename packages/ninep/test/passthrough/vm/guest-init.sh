#!/bin/busybox sh
# /init of the test VM: load the 9p modules, bring up the NIC, mount the server under test
# (reached through QEMU's guestfwd at 10.0.2.100:564) and run one command per step, printing
# "STEP <name> rc=<n>" and the output indented by "  | ". Ends with NINEP-VM-DONE and powers off.
. /bin/vm-prelude.sh
VERSIONS=9p2000.L
for arg in $(cat /proc/cmdline); do
  case "$arg" in ninep_versions=*) VERSIONS="${arg#ninep_versions=}" ;; esac
done
mkdir -p /mnt
# A workload of everyday tools whose output holds no times or inode numbers: its output on a
# 9P2000.L mount must equal its output on tmpfs, line for line.
cat > /bin/work.sh <<'WORKLOAD'
# the workload: run in directory $1; prints results without times or inode numbers
W=$1
cd $W || exit 1
echo "== sed -i"; printf 'a\nb\nc\n' > s.txt; exec 4<s.txt; sed -i 's/b/B/' s.txt; cat s.txt; stat -L -c '%s %h' /proc/$$/fd/4; cat <&4; exec 4<&-
echo "== rename over open"; echo old > o1; echo new > o2; exec 5<o1; mv o2 o1; cat o1; cat <&5; stat -L -c '%s %h' /proc/$$/fd/5; exec 5<&-
echo "== tar"; mkdir -p src/d1/d2; echo f1 > src/d1/f1; echo f2 > src/d1/d2/f2; ln -s d1/f1 src/lnk; tar cf t.tar src && mkdir dst && tar xf t.tar -C dst && find dst | sort && readlink dst/src/lnk
echo "== cpio"; (cd src && find . | cpio -o -H newc 2>/dev/null) > c.cpio; mkdir cp && (cd cp && cpio -id < ../c.cpio 2>/dev/null); find cp | sort
echo "== hardlink then unlink"; echo hl > h1; ln h1 h2; exec 6<h1; rm h1; stat -c '%h' h2; stat -L -c '%h %s' /proc/$$/fd/6; cat <&6; exec 6<&-
echo "== mv across dirs held"; mkdir -p m1/in m2; echo z > m1/in/z; cd m1/in; mv $W/m1/in $W/m2/in; cat z; ls $W/m2/in; cd $W
echo "== dir rename over empty dir"; mkdir e1 e2; echo q > e1/q; mv -T e1 e2; ls e2; ls -d e1 2>&1 | sed 's/.*e1.*/e1 gone/'
echo "== chmod/chown/touch"; touch t1; chmod 4755 t1; stat -c %a t1; chmod u-s t1; stat -c %a t1; touch -d '2020-01-02 03:04:05' t1; stat -c %y t1 | cut -c1-19
echo "== truncate/append"; echo 12345 > tr; truncate -s 2 tr; cat tr; echo; echo x >> tr; od -c tr | head -2
echo "== find/du"; find . -type f | sort | head -30; du -s src | awk '{print ($1 > 0)}'
echo "== rm -rf"; rm -rf src dst cp m1 m2 e2 t.tar c.cpio; ls | sort
echo "== long mv chain"; mkdir ch; i=0; while [ $i -lt 20 ]; do mv ch ch$i 2>/dev/null || mv ch$((i-1)) ch$i; i=$((i+1)); done; ls -d ch*
echo "== fifo"; mkfifo ff; (echo through > ff &); cat ff; rm ff
echo "== done"
WORKLOAD
mkdir -p /tmp/ref
mount -t tmpfs tmp /tmp/ref
sh /bin/work.sh /tmp/ref > /tmp/ref.out 2>&1
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
  if [ "$V" = 9p2000.L ]; then
    step workload-as-tmpfs sh -c "mkdir $D/w && sh /bin/work.sh $D/w > /tmp/w.out 2>&1; rm -rf $D/w; diff /tmp/ref.out /tmp/w.out"
  fi
  step rm rm -r $D/a
  step ls-after ls $D
  step missing cat $D/no-such-file
  step umount umount /mnt
done
echo NINEP-VM-DONE
poweroff -f
