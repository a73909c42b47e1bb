#!/usr/bin/env bash
# Undo install.sh: ./rollback.sh /home/bitrix/www
#
# Saves the current init.php (init.php.before-rollback.<time>), restores the newest init.php.backup.*,
# removes the include block if it is still there, checks the syntax, removes the endpoint and the agent.
# The module's files and the queue table stay (the table may hold undelivered events: see the README).
set -euo pipefail

MARK_BEGIN='>>> integration_sync: added by deploy/bitrix/install.sh'
MARK_END='<<< integration_sync'

die() { echo "rollback.sh: $*" >&2; exit 1; }

[[ $# -eq 1 && -d "$1" ]] || die "usage: rollback.sh SITE_ROOT"
command -v php >/dev/null || die "php (the CLI) is required"
SITE="$(cd "$1" && pwd)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)-$$"
MODULE="$SITE/local/php_interface/integration_sync"
HOOKDIR="$SITE/bitrix/tools/webhook"

INIT=""
for candidate in "$SITE/local/php_interface/init.php" "$SITE/bitrix/php_interface/init.php"; do
    if [[ -f "$candidate" ]] && { grep -qF "$MARK_BEGIN" "$candidate" || compgen -G "$candidate.backup.*" >/dev/null; }; then
        INIT="$candidate"
        break
    fi
done
[[ -n "$INIT" ]] || die "no init.php with the module or a backup under $SITE"

cp -p "$INIT" "$INIT.before-rollback.$STAMP"
LAST="$(find "$(dirname "$INIT")" -maxdepth 1 -name "$(basename "$INIT").backup.*" | LC_ALL=C sort | tail -n1)"
if [[ -n "$LAST" ]]; then
    cp -p "$LAST" "$INIT"
    echo "restored $INIT from $LAST (the file before: $INIT.before-rollback.$STAMP)"
fi
if grep -qF "$MARK_BEGIN" "$INIT"; then
    sed -i "/$(printf '%s' "$MARK_BEGIN" | sed 's/[\/.&]/\\&/g')/,/$MARK_END/d" "$INIT"
    echo "removed the include block from $INIT"
fi
php -l "$INIT" >/dev/null || die "$INIT has a syntax error after the rollback; the file before it is $INIT.before-rollback.$STAMP"

if [[ -f "$HOOKDIR/index.php" ]] && grep -q integration_sync "$HOOKDIR/index.php"; then
    rm -f "$HOOKDIR/index.php" "$HOOKDIR/.htaccess"
    echo "removed the endpoint $HOOKDIR/index.php"
fi
if [[ -f "$SITE/bitrix/modules/main/include/prolog_before.php" && -f "$MODULE/setup.php" ]]; then
    php "$MODULE/setup.php" uninstall "$SITE" || echo "rollback.sh: could not remove the agent; remove \\IntegrationSyncAgent::send(); in Settings > Agents" >&2
fi
echo "rolled back"
