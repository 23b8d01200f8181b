#!/usr/bin/env bash
# Upgrades issuance-bot on this host to NEW_BINARY, as docs/operations.md
# ("Upgrade") describes: check the configuration with the new binary, stop
# the service, back up the stopped database, swap the binary (keeping the
# old one as issuance-bot.previous), start, and wait until /ready answers
# 200. Run as root. Installed as /usr/local/sbin/issuance-bot-upgrade and
# run by scripts/deploy-over-ssh (deploy/README.md, "Continuous deployment").
#
#   issuance-bot-upgrade NEW_BINARY [READY_URL]
set -euo pipefail
umask 077

new=${1:?usage: issuance-bot-upgrade NEW_BINARY [READY_URL]}
ready_url=${2:-http://127.0.0.1:8080/ready}
bin=/usr/local/bin/issuance-bot
config=/etc/issuance-bot/config.toml
secrets=/etc/issuance-bot/secrets.env
db=${ISSUANCE_DB_FILE:-/var/lib/issuance-bot/issuance.db}
backups=/var/lib/issuance-bot/backups
ready_timeout_secs=120

install -m 0755 "$new" "$bin.new"
echo "new binary: $("$bin.new" --version 2>/dev/null || echo unknown)"

# The same user and environment as the unit: a configuration the new
# binary refuses never reaches a stop.
systemd-run --quiet --pipe --wait -p User=issuance-bot \
  -p EnvironmentFile="$secrets" \
  "$bin.new" validate-config --config "$config" >/dev/null

# Waits for the process to exit (the drivers drain first; TimeoutStopSec).
systemctl stop issuance-bot

if [ -f "$db" ]; then
  install -d -m 0700 "$backups"
  backup="$backups/issuance-$(date -u +%Y%m%dT%H%M%SZ).db"
  if command -v sqlite3 >/dev/null; then
    sqlite3 "$db" ".backup '$backup'"
  else
    # Stopped cleanly, the WAL is checkpointed; copy it too if one is left.
    cp -p "$db" "$backup"
    if [ -f "$db-wal" ]; then cp -p "$db-wal" "$backup-wal"; fi
  fi
  echo "database backed up to $backup"
fi

if [ -f "$bin" ]; then cp -p "$bin" "$bin.previous"; fi
mv -f "$bin.new" "$bin"
systemctl start issuance-bot

deadline=$((SECONDS + ready_timeout_secs))
until curl -fsS --max-time 5 "$ready_url"; do
  if ((SECONDS >= deadline)); then
    echo "not ready after ${ready_timeout_secs}s; the previous binary is $bin.previous" >&2
    echo "(roll back only if the release notes allow it: docs/operations.md, Upgrade)" >&2
    journalctl -u issuance-bot -n 50 --no-pager >&2 || true
    exit 1
  fi
  sleep 2
done
echo
echo "issuance-bot upgraded and ready"
