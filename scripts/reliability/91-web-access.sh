#!/usr/bin/env bash
# Issue 14 (web view): the access token, the Origin check and the loopback
# rule of `umlkit lab web` against another local user and hostile requests
# (no token, guessed and oversized tokens, foreign Origin, path escapes),
# and a clean end on SIGTERM. Runs on a lab that is not started (the server
# still serves its plan), so no guest boots.
. "$(dirname "$0")/lib.sh"
export UMLKIT_LAB_STATE="$WORK/labstate"
if ! command -v linux.uml >/dev/null && [ -z "${UMLKIT_KERNEL:-}" ]; then
  skip "web: no UML kernel"; exit 0
fi
command -v curl >/dev/null || { skip "web: no curl"; exit 0; }
L="$WORK/lab"; mkdir -p "$L"
printf 'a[0]=A\nb[0]=A\n' >"$L/lab.conf"

out=$("$UMLKIT" lab web "$L" --listen 0.0.0.0:0 2>&1 </dev/null); rc=$?
check "non-loopback without --remote refused (rc $rc)" [ "$rc" != 0 ]
check "the refusal names --remote" grep -q -- '--remote' <<<"$out"

"$UMLKIT" lab web "$L" --listen 127.0.0.1:0 >"$WORK/url" 2>"$WORK/err" </dev/null &
WEB=$!
on_exit kill_pid "$WEB"
for _ in $(seq 300); do grep -q 'http://' "$WORK/url" && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*' "$WORK/url")
check "the server prints its URL" [ -n "$URL" ]
TOKEN=${URL##*token=}
HP=${URL#http://}; HP=${HP%%/*}
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@"; }
ws() { code --path-as-is -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' \
  -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' "$@"; }
ID=$(curl -s --max-time 5 -H "Authorization: Bearer $TOKEN" "http://$HP/api/labs" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
check "with the token the API answers" [ -n "$ID" ]

if have_other_user; then
  c=$(as_other curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HP/api/labs")
  check "another user without the token: 401 (got $c)" [ "$c" = 401 ]
  c=$(as_other curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$HP/api/labs/$ID/status")
  check "another user, status without the token: 401 (got $c)" [ "$c" = 401 ]
else
  skip "another user: cannot create one"
fi
last=${TOKEN: -1}; [ "$last" = 0 ] && other=1 || other=0
c=$(code -H "Authorization: Bearer ${TOKEN%?}$other" "http://$HP/api/labs")
check "a token differing in its last digit: 401 (got $c)" [ "$c" = 401 ]
c=$(code -H "Authorization: Bearer ${TOKEN:0:32}" "http://$HP/api/labs")
check "half the token: 401 (got $c)" [ "$c" = 401 ]
big=$(head -c 60000 /dev/zero | tr '\0' a)
c=$(code -H "Authorization: Bearer $big" "http://$HP/api/labs")
check "a 60 kB token: refused (got $c)" [ "$c" = 401 ] || [ "$c" = 431 ]
c=$(ws -H "Origin: http://$HP" "http://$HP/api/labs/$ID/events")
check "WebSocket without the token: 401 (got $c)" [ "$c" = 401 ]
c=$(ws -H "Authorization: Bearer $TOKEN" -H 'Origin: http://evil.example' "http://$HP/api/labs/$ID/events")
check "WebSocket from a foreign Origin: 403 (got $c)" [ "$c" = 403 ]
c=$(ws -H "Authorization: Bearer $TOKEN" -H 'Origin: null' "http://$HP/api/labs/$ID/machines/a/terminal")
check "terminal WebSocket from Origin null: 403 (got $c)" [ "$c" = 403 ]
c=$(code --path-as-is -H "Authorization: Bearer $TOKEN" "http://$HP/assets/../../../../etc/passwd")
check "asset path escape: 404 (got $c)" [ "$c" = 404 ]
c=$(code --path-as-is -H "Authorization: Bearer $TOKEN" "http://$HP/api/labs/$ID/machines/..%2f..%2fa/log")
check "machine name escape: 404 (got $c)" [ "$c" = 404 ]
c=$(code -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"action":"stop","machines":["../x"]}' "http://$HP/api/labs/$ID/action")
check "action on an unknown machine: 404 (got $c)" [ "$c" = 404 ]
c=$(code -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"action":' "http://$HP/api/labs/$ID/action")
check "malformed action JSON: 400 (got $c)" [ "$c" = 400 ]
c=$(code -H "Authorization: Bearer $TOKEN" "http://$HP/api/labs")
check "still serving after all that (got $c)" [ "$c" = 200 ]

kill -TERM "$WEB"
rc=
for _ in $(seq 100); do kill -0 "$WEB" 2>/dev/null || { wait "$WEB"; rc=$?; break; }; sleep 0.1; done
check "SIGTERM ends the server cleanly (rc ${rc:-still running})" [ "${rc:-x}" = 0 ]
c=$(code "http://$HP/api/labs")
check "the port is closed afterwards (got $c)" [ "$c" = 000 ]

# Ctrl-C (SIGINT) ends it as cleanly
"$UMLKIT" lab web "$L" --listen 127.0.0.1:0 >"$WORK/url2" 2>/dev/null </dev/null &
WEB2=$!
on_exit kill_pid "$WEB2"
for _ in $(seq 300); do grep -q 'http://' "$WORK/url2" && break; sleep 0.1; done
kill -INT "$WEB2"
rc=
for _ in $(seq 100); do kill -0 "$WEB2" 2>/dev/null || { wait "$WEB2"; rc=$?; break; }; sleep 0.1; done
check "SIGINT ends the server cleanly (rc ${rc:-still running})" [ "${rc:-x}" = 0 ]
