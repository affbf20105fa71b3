#!/usr/bin/env bash
# Memory floor measurement (docs/labs.md, "Memory floor"): for each M[mem]=N
# in $SIZES, $RUNS times: a 3-machine lab, each machine copying a 4 MiB
# folder and running a startup; prints whether `lab start` succeeded, whether
# each machine ran its startup on the copied data, and its MemTotal and
# MemAvailable. Usage: RUNS=4 SIZES="40 48 56 64" bash scripts/lab-memfloor.sh
set -u
U=${UMLKIT:-$(dirname "$0")/../target/debug/umlkit}
RUNS=${RUNS:-4}
SIZES=${SIZES:-"40 48 56 64"}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
export UMLKIT_LAB_STATE=$W/state
for mem in $SIZES; do
  for run in $(seq 1 $RUNS); do
    L=$W/lab-$mem-$run; mkdir -p $L
    : > $L/lab.conf
    for m in pc1 pc2 pc3; do
      echo "$m[0]=A" >> $L/lab.conf; echo "$m[mem]=$mem" >> $L/lab.conf
      mkdir -p $L/$m/data
      for i in 1 2 3 4; do head -c 1048576 /dev/urandom > $L/$m/data/f$i; done
      cat > $L/$m.startup <<S
ifconfig eth0 10.0.0.${m#pc}/24 up
cat /data/f* | md5sum > /root/sum
S
    done
    t0=$(date +%s.%N)
    # --min-mem 40: measure below the floor umlkit applies by default.
    if out=$($U lab start --min-mem 40 $L 2>&1); then st=ok; else st=FAIL; fi
    t1=$(date +%s.%N)
    res=""
    for m in pc1 pc2 pc3; do
      want=$(cat $L/$m/data/f* | md5sum)
      got=$($U lab exec -d $L --timeout 30 $m -- sh -c 'cat /root/sum; grep -E "MemTotal|MemAvailable" /proc/meminfo | tr -s " " | tr "\n" " "' 2>&1)
      if [ "${got%%$'\n'*}" = "$want" ]; then r=ok; else r=bad; fi
      avail=$(echo "$got" | tail -1)
      res="$res $m:$r[$avail]"
    done
    echo "mem=$mem run=$run start=$st $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}")s $res"
    [ $st = FAIL ] && echo "$out" | tail -5 | sed 's/^/    /'
    $U lab clean $L >/dev/null 2>&1
  done
done
