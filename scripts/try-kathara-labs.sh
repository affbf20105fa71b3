#!/usr/bin/env bash
# Survey: run public Kathará labs unchanged with umlkit and judge them with
# /work/shared/bench/labcheck.py (or $LABCHECK), one lab at a time.
#
#   scripts/try-kathara-labs.sh CHECKOUT [LAB...]
#
# CHECKOUT is a checkout of github.com/KatharaFramework/Kathara-Labs (see
# docs/kathara-labs.md for the commit surveyed). LAB is a lab folder relative
# to CHECKOUT; without any, the prioritised list below runs. Environment:
#   UMLKIT     the umlkit binary (default: target/release/umlkit of this repo)
#   LABCHECK   labcheck.py (default: /work/shared/bench/labcheck.py)
#   LAB_TIMEOUT  seconds per lab, all checks included (default 420)
#   OUT        result directory (default: a new mktemp -d); one log per lab and
#              results.tsv (lab, exit code, seconds, labcheck's summary line)
# Every lab is cleaned (`umlkit lab clean`) after its run, also on timeout.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
CHECKOUT=${1:?usage: try-kathara-labs.sh CHECKOUT [LAB...]}
shift
UMLKIT=${UMLKIT:-$here/target/release/umlkit}
LABCHECK=${LABCHECK:-/work/shared/bench/labcheck.py}
LAB_TIMEOUT=${LAB_TIMEOUT:-420}
OUT=${OUT:-$(mktemp -d /tmp/kathara-labs.XXXXXX)}
mkdir -p "$OUT"

# "folder|labcheck flags" (flags are shell words, quotes allowed): routing labs
# get --routes, all get --ping; --expect checks what a lab is about when it has
# no addresses or dynamic routes to judge it by ($retry: up to ~50 s for
# SLAAC and BGP sessions to come up); labs without addresses get no --ping.
retry='r() { for i in $(seq 25); do "$@" && return 0; sleep 2; done; return 1; }; r'
default_labs=(
  "main-labs/basic-topics/two-computers/kathara-lab_two-computers|"
  "main-labs/basic-topics/basic-ipv4/kathara-lab_basic-ipv4|--ping"
  "main-labs/basic-topics/arp/kathara-lab_arp|--ping"
  "main-labs/basic-topics/static-routing/kathara-lab_static-routing|--ping"
  "main-labs/basic-topics/basic-ipv6/kathara-lab_basic-ipv6|--expect 'pc1:$retry ping -6 -c 1 -W 2 2001:0:0:3::1' --expect 'pc2:$retry ping -6 -c 1 -W 2 2001:0:0:1::1'"
  "main-labs/switching/one-bridge/kathara-lab_one-bridge|--expect 'b1:[ \$(bridge link | grep -c mainbridge) = 4 ]'"
  "exercises/01-simple-configuration/lab|"
  "exercises/02-add-one-router/lab|--ping"
  "main-labs/intradomain-routing/frr/rip/kathara-lab_rip|--routes --ping"
  "main-labs/intradomain-routing/quagga/rip/kathara-lab_rip|--routes --ping"
  "main-labs/intradomain-routing/frr/ospf/kathara-lab_ospf/kathara-lab_ospf_frr-singlearea|--routes --ping"
  "main-labs/intradomain-routing/quagga/ospf/kathara-lab_ospf/kathara-lab_ospf-singlearea|--routes --ping"
  "main-labs/intradomain-routing/frr/ospf/kathara-lab_ospf/kathara-lab_ospf_frr-multiarea|--routes --ping"
  "main-labs/intradomain-routing/quagga/ospf/kathara-lab_ospf/kathara-lab_ospf-multiarea|--routes --ping"
  "main-labs/intradomain-routing/frr/frrouting-introduction/kathara-lab_frr|--routes --ping"
  "main-labs/intradomain-routing/quagga/quagga-introduction/kathara-lab_quagga|--routes --ping"
  "main-labs/interdomain-routing/frr/bgp-simple-peering/kathara-lab_bgp-simple-peering|--ping --expect 'router1:for i in \$(seq 25); do vtysh -c \"show bgp neighbors 193.10.11.2\" | grep -q \"state = Established\" && exit 0; sleep 2; done; exit 1'"
  "main-labs/interdomain-routing/quagga/bgp-simple-peering/kathara-lab_bgp-simple-peering|--ping --expect 'router1:for i in \$(seq 25); do vtysh -c \"show bgp neighbors 193.10.11.2\" | grep -q \"state = Established\" && exit 0; sleep 2; done; exit 1'"
  "main-labs/interdomain-routing/frr/bgp-announcement/kathara-lab_bgp-announcement|--routes --ping"
  "main-labs/interdomain-routing/quagga/bgp-announcement/kathara-lab_bgp-announcement|--routes --ping"
  "main-labs/interdomain-routing/frr/bgp-stub-as/kathara-lab_bgp-stub-as|--ping"
  "main-labs/interdomain-routing/frr/bgp-prefix-filtering/kathara-lab_bgp-prefix-filtering|--ping"
  "main-labs/application-level/dns/kathara-lab_dns|--ping --expect 'pc1:ping -c 1 -W 3 pc2.startup.net' --expect 'pc2:dig +short pc1.uniroma3.it | grep -qx 192.168.0.111'"
  "main-labs/application-level/web-server/kathara-lab_web-server|--ping --expect 'client:curl -sf http://10.0.0.1/ | cmp - /hostlab/server/var/www/html/index.html'"
  "main-labs/application-level/http-tcp/kathara-lab_http-tcp|--ping"
)

if [ $# -gt 0 ]; then
  labs=()
  for l in "$@"; do
    case $l in *"|"*) labs+=("$l") ;; *) labs+=("$l|--ping") ;; esac # default: ping matrix
  done
else
  labs=("${default_labs[@]}")
fi

printf 'lab\trc\tseconds\tsummary\n' >"$OUT/results.tsv"
for entry in "${labs[@]}"; do
  lab=${entry%%|*}
  flags=${entry#*|}
  dir=$CHECKOUT/$lab
  log=$OUT/$(printf '%s' "$lab" | tr '/' '_').log
  if [ ! -f "$dir/lab.conf" ]; then
    printf '%s\t-\t0\tno lab.conf\n' "$lab" >>"$OUT/results.tsv"
    continue
  fi
  echo "== $lab ($flags)" >&2
  t0=$(date +%s)
  eval "extra=($flags)"
  timeout --kill-after=20 "$LAB_TIMEOUT" python3 "$LABCHECK" "$UMLKIT" "$dir" \
    --start-timeout 300 --converge-timeout 120 --keep "${extra[@]}" >"$log" 2>&1
  rc=$?
  secs=$(($(date +%s) - t0))
  timed_out=
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    timed_out="TIMEOUT after ${LAB_TIMEOUT}s"
    echo "$timed_out" >>"$log"
  fi
  # keep what the machines said before cleaning: status and each machine's logs
  (cd "$dir" && timeout 60 "$UMLKIT" lab status) >>"$log" 2>&1
  if [ "$rc" != 0 ]; then
    for m in $(sed -nE 's/^[[:space:]]*([A-Za-z0-9_.-]+)\[.*/\1/p' "$dir/lab.conf" | sort -u); do
      echo "---- lab logs $m" >>"$log"
      (cd "$dir" && timeout 30 "$UMLKIT" lab logs "$m") >>"$log" 2>&1
      # OOM kills and the routing daemons' running config, when there are any
      (cd "$dir" && timeout 30 "$UMLKIT" lab exec "$m" -- sh -c \
        'dmesg | grep -i "out of memory"; command -v vtysh >/dev/null && pgrep -l "zebra|ospfd|ripd|bgpd" && vtysh -c "show running-config" | grep -v "^!"') >>"$log" 2>&1
    done
  fi
  (cd "$dir" && timeout 120 "$UMLKIT" lab clean) >>"$log" 2>&1
  summary=$(grep -E '^(OK|FAIL)' "$log" | tail -1)
  summary=${summary:-${timed_out:-no summary, see $log}}
  printf '%s\t%s\t%s\t%s\n' "$lab" "$rc" "$secs" "$summary" >>"$OUT/results.tsv"
  echo "   rc=$rc ${secs}s $summary" >&2
done
echo "results: $OUT/results.tsv" >&2
