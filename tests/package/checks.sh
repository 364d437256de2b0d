#!/bin/bash
# Runs inside the Debian 12 root that tests/package/boot_test boots with
# systemd as PID 1 (systemd-nspawn --boot), as the oneshot unit
# package-checks.service after multi-user.target. It installs, upgrades,
# removes and purges the package the way an operator does, checks the service
# under systemd at each step, writes one line per check to
# /package-checks/result ("ok - ..." or "not ok - ..."; "done" last when it
# ran to the end) and powers the machine off.
set -uo pipefail
out=/package-checks
result=$out/result
: > "$result"
failures=0
ok() { echo "ok - $*" >> "$result"; }
not_ok() { echo "not ok - $*" >> "$result"; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
  local what=$1; shift
  if "$@" >> "$out/commands.log" 2>&1; then ok "$what"; else not_ok "$what (command: $*)"; fi
}
# Waits up to $2 seconds for the command in $3... to succeed.
wait_for() {
  local what=$1 limit=$2; shift 2
  local i
  for ((i = 0; i < limit * 5; i++)); do
    if "$@" >> "$out/commands.log" 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$what: still not after ${limit}s: $*" >> "$out/commands.log"
  return 1
}
finish() {
  journalctl --no-pager -o short-monotonic > "$out/journal.txt" 2>&1 || true
  echo "done failures=$failures" >> "$result"
  sync
  systemctl poweroff --no-block
  exit 0
}
prop() { systemctl show -P "$1" referrald; }
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q --no-install-recommends "$@" >> "$out/commands.log" 2>&1; }

first=$(ls /package-checks/debs/first/referrald_*.deb)
second=$(ls /package-checks/debs/second/referrald_*.deb)
first_version=$(dpkg-deb -f "$first" Version)
second_version=$(dpkg-deb -f "$second" Version)
config=/etc/referrald/referrald.toml
token=boot-test-token-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

# --- Install: the user, the state directory, the unit enabled but waiting for its key.
check "install $first_version with apt" apt_install "$first"
[[ $(dpkg-query -W -f='${Status}' referrald) == "install ok installed" ]] || { not_ok "referrald is installed"; finish; }
check "the referrald system user exists" getent passwd referrald
check "/var/lib/referrald is 0700 referrald:referrald" test "$(stat -c '%a %U:%G' /var/lib/referrald)" = "700 referrald:referrald"
check "the unit is enabled" systemctl is-enabled --quiet referrald
check "without a key the unit is not started" test "$(prop ActiveState)" = inactive
check "... and not failed: its start condition was unmet" test "$(prop ConditionResult)" = no
for page in man8/referrald.8 man8/referralctl.8 man5/referrald.toml.5 man5/referrald-rules.toml.5; do
  check "man page $page is installed" test -s /usr/share/man/$page.gz
done
check "the conffiles are registered" sh -c "dpkg-query -W -f='\${Conffiles}' referrald | grep -q /etc/referrald/referrald.toml"

# --- Configure as the package's docs say: the key in /etc/credstore, an API key, a second spool.
install -m 0700 -d /etc/credstore
(umask 077; printf '%s %s\n' "$(date -u +%Y-%m)" "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" > /etc/credstore/encryption-keys)
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
sed -i "s/^api_keys = \[\]/api_keys = [\"sha256:$hash\"]  # edited by the boot test/" "$config"
cat >> "$config" <<'TOML'

[[target]]
name = "spool-b"
type = "spool"
directory = "/var/lib/referrald/spool-b"
TOML
check "the edited configuration checks" referrald --check-config --config "$config"

# --- Start: Type=notify, so `systemctl start` returns once READY=1 came.
check "systemctl start referrald" systemctl start referrald
check "active (running) after start" test "$(prop ActiveState)/$(prop SubState)" = active/running
check "the daemon's status text arrived (sd_notify READY=1 with STATUS=)" sh -c "systemctl show -P StatusText referrald | grep -q ."
check "the credential was handed over (/run/credentials)" test -s /run/credentials/referrald.service/encryption-keys

submit() {
  curl -sS -o "$out/submit.json" -w '%{http_code}' -X POST http://127.0.0.1:8080/api/v1/referrals \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data-binary @/package-checks/referral.json
}
status=$(submit)
check "a referral is accepted (202)" test "$status" = 202
id=$(sed -n 's/.*"id":"\(R-[^"]*\)".*/\1/p' "$out/submit.json")
check "the referral has an id" test -n "$id"
check "it is delivered to the spool" wait_for spool 30 sh -c "ls /var/lib/referrald/spool | grep -q '$id'"
check "referralctl shows it, decrypted with the service's credential" sh -c "referralctl show '$id' | grep -q Nguyen"

# --- Reload: a changed route applies without a restart.
pid=$(prop MainPID)
sed -i 's/^notify = \["spool"\]/notify = ["spool-b"]/' "$config"
check "systemctl reload referrald" systemctl reload referrald
check "the reload kept the process" test "$(prop MainPID)" = "$pid"
check "active (running) after the reload" test "$(prop ActiveState)/$(prop SubState)" = active/running
status=$(submit)
second_id=$(sed -n 's/.*"id":"\(R-[^"]*\)".*/\1/p' "$out/submit.json")
check "a referral after the reload is accepted" test "$status" = 202
check "it goes to the changed route's target (spool-b)" wait_for spool-b 30 sh -c "ls /var/lib/referrald/spool-b 2>/dev/null | grep -q '$second_id'"

# --- A refused file fails the reload, and the daemon keeps running the previous one.
cp "$config" "$out/config.good"
printf '\n[[route]]\nnotify = ["nowhere"]\n' >> "$config"
check "systemctl reload fails for a file the daemon refuses" sh -c "! systemctl reload referrald >> $out/commands.log 2>&1"
# systemctl itself says only "Job for referrald.service failed. See systemctl
# status ..."; the reload command's own words are in the unit's journal,
# which systemctl status shows.
check "... systemctl status shows why (the reload command's words)" sh -c "systemctl status referrald --no-pager -n 20 | grep -q 'refused the configuration and keeps running the previous one'"
check "... the journal names the problem" sh -c "journalctl -u referrald --no-pager | grep -q 'unknown target'"
check "... the same process keeps running" test "$(prop MainPID)/$(prop ActiveState)" = "$pid/active"
cp "$out/config.good" "$config"

# --- Watchdog: a hung event loop (the whole process stopped) is killed and restarted.
restarts=$(prop NRestarts)
kill -STOP "$pid"
check "a stopped daemon is restarted by the watchdog" wait_for watchdog 120 sh -c "
  [ \"\$(systemctl show -P NRestarts referrald)\" -gt $restarts ] &&
  [ \"\$(systemctl show -P MainPID referrald)\" != $pid ] &&
  [ \"\$(systemctl show -P ActiveState referrald)\" = active ]"
check "the journal says it was the watchdog" sh -c "journalctl -u referrald --no-pager | grep -q 'Watchdog timeout'"
check "the restarted daemon still has the first referral" sh -c "referralctl show '$id' | grep -q Nguyen"

# --- systemd-analyze security on the running unit.
systemd-analyze security --no-pager referrald > "$out/security.txt" 2>&1
exposure=$(sed -n 's/.*Overall exposure level for referrald.service: \([0-9.]*\).*/\1/p' "$out/security.txt")
echo "exposure $exposure" >> "$out/commands.log"
check "systemd-analyze security rates the running unit at most 2.0 (got ${exposure:-nothing})" \
  awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'

# --- Upgrade to the same tree with a bumped version: the referral and the edited conffile survive.
pid=$(prop MainPID)
check "upgrade to $second_version with apt" apt_install "$second"
check "the installed version is $second_version" test "$(dpkg-query -W -f='${Version}' referrald)" = "$second_version"
check "the upgrade restarted the running daemon" test "$(prop MainPID)" != "$pid"
check "active (running) after the upgrade" test "$(prop ActiveState)/$(prop SubState)" = active/running
check "the edited conffile survived" grep -q "edited by the boot test" "$config"
check "... with the reload's route" grep -q '^notify = \["spool-b"\]' "$config"
check "no .dpkg-dist beside it (dpkg kept the edit silently)" test ! -e "$config.dpkg-dist"
check "the referral survived" sh -c "curl -sS -H 'Authorization: Bearer $token' http://127.0.0.1:8080/api/v1/referrals/$id | grep -q '\"id\":\"$id\"'"

# --- Remove: stopped; configuration and referrals kept.
check "apt remove referrald" sh -c "apt-get remove -y -q referrald >> $out/commands.log 2>&1"
check "removed: the service is stopped" test "$(systemctl show -P ActiveState referrald)" != active
check "removed: the binary is gone" test ! -e /usr/sbin/referrald
check "removed: the configuration is kept" grep -q "edited by the boot test" "$config"
check "removed: the database is kept" test -s /var/lib/referrald/referrald.db

# --- Purge, not asked: the configuration goes, the referrals stay.
check "apt purge referrald (debconf not asked: default)" sh -c "apt-get purge -y -q referrald >> $out/commands.log 2>&1"
check "purged: /etc/referrald is gone" test ! -e /etc/referrald/referrald.toml
check "purged without being asked: the database is kept" test -s /var/lib/referrald/referrald.db

# --- Purge, asked to remove the data (debconf referrald/purge_data = true).
check "install again" apt_install "$second"
echo 'referrald referrald/purge_data boolean true' | debconf-set-selections
check "apt purge referrald with referrald/purge_data true" sh -c "apt-get purge -y -q referrald >> $out/commands.log 2>&1"
check "purged when asked: /var/lib/referrald is gone" test ! -e /var/lib/referrald
check "the referrald user is left in place" getent passwd referrald

finish
