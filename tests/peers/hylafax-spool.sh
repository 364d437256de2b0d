#!/usr/bin/env bash
# A private HylaFAX server for tests (docs/test-peers.md): a copy of the spool
# and /etc/hylafax in DIR, faxq and hfaxd on the given loopback ports, no modem
# (jobs stay queued in DIR/sendq, which is what the tests read).
#
#   hylafax-spool.sh prepare DIR               # build the spool copy only
#   hylafax-spool.sh start   DIR FAXPORT SNPPPORT
#   hylafax-spool.sh stop    DIR               # kills both process groups
#
# Users in hosts.hfaxd: "secure" with password "secret" (a password login),
# and anyone from 127.0.0.1/localhost without a password. The pagermap
# rejects ids starting with REJECT and maps any number to 5551212/<id>.
# Each daemon runs in its own session; its process-group id is written to
# DIR/faxq.pgid and DIR/hfaxd.pgid for `stop` (hfaxd forks a child per
# connection that a plain kill would leave running).
set -euo pipefail

usage() {
  echo "usage: $0 prepare DIR | start DIR FAXPORT SNPPPORT | stop DIR" >&2
  exit 2
}

prepare() {
  local sp=$1
  rm -rf "$sp"
  mkdir -p "$(dirname "$sp")"
  cp -a /var/spool/hylafax "$sp"
  mkdir -p "$sp/etc"
  cp -a /etc/hylafax/. "$sp/etc/"
  {
    printf '^secure@:100:%s\n' "$(openssl passwd -1 secret)"
    printf '127.0.0.1\nlocalhost\n'
  } >"$sp/etc/hosts.hfaxd"
  chown uucp:uucp "$sp/etc/hosts.hfaxd"
  chmod 600 "$sp/etc/hosts.hfaxd" # hfaxd denies all access otherwise
  printf 'REJECT.*\treject\n^[0-9]+$\t5551212/&\n' >"$sp/etc/pagermap"
  printf '#!/bin/sh\necho "notify $*" >> log/notify.log\n' >"$sp/bin/notify-log"
  chmod 755 "$sp/bin/notify-log"
  echo 'NotifyCmd: bin/notify-log' >>"$sp/etc/config" # keep faxq from calling sendmail
}

listening() { # port
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local sp=$1 fax_port=$2 snpp_port=$3
  [[ -d $sp/sendq ]] || prepare "$sp"
  rm -f "$sp/FIFO"
  setsid /usr/sbin/faxq -D -q "$sp" </dev/null >>"$sp/faxq.out" 2>&1 &
  echo $! >"$sp/faxq.pgid"
  for _ in $(seq 1 250); do
    [[ -p $sp/FIFO ]] && break
    sleep 0.02
  done
  [[ -p $sp/FIFO ]] || { echo "faxq did not create $sp/FIFO" >&2; exit 1; }
  setsid /usr/sbin/hfaxd -d -q "$sp" -l 127.0.0.1 -i "$fax_port" -s "$snpp_port" \
    </dev/null >>"$sp/hfaxd.out" 2>&1 &
  echo $! >"$sp/hfaxd.pgid"
  for _ in $(seq 1 250); do
    listening "$fax_port" && listening "$snpp_port" && return 0
    sleep 0.02
  done
  echo "hfaxd is not listening on $fax_port and $snpp_port" >&2
  exit 1
}

stop() {
  local sp=$1 f pgid
  for f in "$sp/hfaxd.pgid" "$sp/faxq.pgid"; do
    [[ -f $f ]] || continue
    pgid=$(cat "$f")
    [[ $pgid =~ ^[0-9]+$ ]] && kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$f"
  done
}

case "${1:-}" in
  prepare) [[ $# -eq 2 ]] || usage; prepare "$2" ;;
  start) [[ $# -eq 4 ]] || usage; start "$2" "$3" "$4" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
