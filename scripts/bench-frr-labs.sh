#!/usr/bin/env bash
# FRR lab numbers (docs/images.md, "FRR labs: numbers"). For each N in
# $SIZES (default "5 10"), a generated ring of N FRR OSPF routers on the
# Debian lab image (kathara/frr), $RUNS times (default 1):
#   start -> startup files done   `umlkit lab start` returning (every machine
#                                 ready: boot steps and startup files run)
#   start -> converged            every router has a route to all 2N prefixes
#                                 (N ring links + N stub LANs), polled inside
#                                 each router, all routers at once
#   kernel only                   N linux.uml on COWs of the same image,
#                                 booting straight to `poweroff -f`, in parallel
#   memory per idle router        PSS of the lab's UML processes, each address
#                                 space counted once (`umlkit ps --json`)
#   image in the page cache       fincore on the image file once N routers
#                                 run (its pages evicted before the start)
# Usage: SIZES="5 10" RUNS=1 bash scripts/bench-frr-labs.sh
# Env: UMLKIT (binary), UMLKIT_CACHE_DIR (image cache; the image is built if
# missing), MEM (per router, default 128m).
set -u
here=$(cd "$(dirname "$0")" && pwd)
U=${UMLKIT:-$here/../target/debug/umlkit}
SIZES=${SIZES:-"5 10"}
RUNS=${RUNS:-1}
MEM=${MEM:-128m}
W=$(mktemp -d /tmp/umlkit-frrbench.XXXXXX)
ST=$W/state
cleanup() {
  for l in "$W"/ring*; do [ -d "$l" ] && "$U" lab clean --state-root "$ST" "$l" >/dev/null 2>&1; done
  # bare-kernel guests are children of this shell's jobs; kill only those
  for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

img=$("$U" image build kathara/frr) || { echo "image build failed" >&2; exit 1; }
kernel=$(command -v linux.uml || echo /usr/bin/linux.uml)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# A ring of $1 routers: r_i links to r_{i+1} on domain L_i (10.0.i.0/24) and
# has a stub LAN S_i (10.1.i.0/24); per-daemon ospfd.conf as in
# examples/labs/frr-ospf.
gen_ring() {
  local n=$1 d=$2 i prev
  mkdir -p "$d"
  echo 'LAB_DESCRIPTION="umlkit FRR ring bench"' > "$d/lab.conf"
  for i in $(seq 1 "$n"); do
    prev=$(( i == 1 ? n : i - 1 ))
    cat >> "$d/lab.conf" <<EOF
r$i[0]="L$i"
r$i[1]="L$prev"
r$i[2]="S$i"
r$i[image]="kathara/frr"
r$i[mem]="$MEM"
EOF
    printf 'ip address add 10.0.%s.1/24 dev eth0\nip address add 10.0.%s.2/24 dev eth1\nip address add 10.1.%s.1/24 dev eth2\nsystemctl start frr\n' \
      "$i" "$prev" "$i" > "$d/r$i.startup"
    mkdir -p "$d/r$i/etc/frr"
    printf 'zebra=yes\nospfd=yes\nstaticd=yes\nvtysh_enable=yes\nzebra_options="  -A 127.0.0.1 -s 90000000"\nospfd_options="  -A 127.0.0.1"\nstaticd_options="-A 127.0.0.1"\n' \
      > "$d/r$i/etc/frr/daemons"
    {
      for e in eth0 eth1; do
        printf 'interface %s\n ip ospf network point-to-point\n ip ospf hello-interval 2\n ip ospf dead-interval 10\n!\n' $e
      done
      printf 'router ospf\n ospf router-id 10.255.0.%s\n network 10.0.0.0/15 area 0\n passive-interface eth2\n!\n' "$i"
    } > "$d/r$i/etc/frr/ospfd.conf"
  done
}

evict() { python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$1"; }
cached_mib() { fincore -b -n -o RES "$1" | awk '{ printf "%.1f", $1 / 1048576 }'; }

# Kernel only: $1 guests on COWs of the image, boot to poweroff, in parallel.
bare() {
  local n=$1 k=$W/kernel i t0
  mkdir -p "$k"
  rm -f "$k"/*.cow
  t0=$(now)
  for i in $(seq 1 "$n"); do
    setsid "$kernel" umid=kb$i uml_dir="$k" mem=128M ubd0="$k/k$i.cow,$img" root=/dev/ubda \
      con=null con0=fd:0,fd:1 quiet init=/sbin/poweroff -f </dev/null >/dev/null 2>&1 &
  done
  wait
  secs "$t0" "$(now)"
}

echo "image: $img ($(du -h "$img" | cut -f1) allocated, $(du -h --apparent-size "$img" | cut -f1) apparent)"
for n in $SIZES; do
  for run in $(seq 1 "$RUNS"); do
    L=$W/ring$n
    rm -rf "$L"
    gen_ring "$n" "$L"
    evict "$img"
    before=$(cached_mib "$img")
    t0=$(now)
    if ! out=$("$U" lab start --state-root "$ST" "$L" 2>&1); then
      echo "$out" | tail -20; echo "ring of $n: lab start FAILED"; exit 1
    fi
    t1=$(now)
    want=$((2 * n))
    pids=()
    for i in $(seq 1 "$n"); do
      "$U" lab exec --state-root "$ST" -d "$L" r$i -- \
        "for t in \$(seq 1 1200); do [ \$(ip -4 route show | grep -c '^10\.[01]\.') -ge $want ] && exit 0; sleep 0.1; done; exit 1" \
        >/dev/null 2>&1 &
      pids+=($!)
    done
    ok=1
    for p in "${pids[@]}"; do wait "$p" || ok=0; done
    t2=$(now)
    [ $ok = 1 ] || { echo "ring of $n: NOT converged within 120 s"; exit 1; }
    cache=$(cached_mib "$img")
    # let the routers go idle, then count memory
    labid=$(ls "$ST")
    pss=$(UMLKIT_STATE_DIR=$ST/$labid/g "$U" ps --json |
      python3 -c 'import json,sys; g=json.load(sys.stdin); print("%.1f %.1f %d" % (sum(x["pss_kb"] for x in g)/1024/len(g), max(x["pss_kb"] for x in g)/1024, len(g)))')
    "$U" lab clean --state-root "$ST" "$L" >/dev/null 2>&1
    tk=$(bare "$n")
    echo "ring of $n FRR routers (run $run): start -> startup files done $(secs "$t0" "$t1") s;" \
      "start -> converged $(secs "$t0" "$t2") s; kernel only ($n guests boot+poweroff) $tk s;" \
      "idle router PSS mean/max $(echo "$pss" | awk '{print $1 "/" $2}') MiB over $(echo "$pss" | awk '{print $3}') guests;" \
      "image in page cache ${before} -> ${cache} MiB"
  done
done
