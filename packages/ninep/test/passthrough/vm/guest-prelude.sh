# The start every test VM's /init shares (buildInitramfs installs it as /bin/vm-prelude.sh; an
# init script sources it): busybox's applets, /proc, /sys and /dev, the 9p and network modules,
# and the guest's address on QEMU's user network (the host's server is 10.0.2.100 there).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in netfs fscache 9pnet 9pnet_fd 9p e1000; do insmod /lib/mod/$m.ko || echo "STEP insmod-$m rc=1"; done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
# The e1000 link comes up a moment after `ip link set up` (seconds under a loaded host): a connect
# before it fails with "No route to host". Wait for the carrier, for 30 s at most.
i=0
while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
[ $i -ge 300 ] && echo "STEP carrier rc=1"
