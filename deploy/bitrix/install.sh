#!/usr/bin/env bash
# Install the integration_sync shop module into a Bitrix site: ./install.sh /home/bitrix/www
#
# Backs up init.php (init.php.backup.<UTC time>-<pid>), copies the module to local/php_interface/
# integration_sync/ (an existing config.php is kept; a new one is made from config.php.example) and the
# endpoint to bitrix/tools/webhook/, adds ONE include block to init.php (marked; a second install adds
# nothing), runs `php -l` on every file (any error: everything restored, exit 1), then creates the queue
# table and registers the agent with setup.php when Bitrix can be booted from the CLI (else it prints the
# SQL and the step to run by hand; ISYNC_SKIP_SETUP=1 skips it). Undo: rollback.sh.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MARK_BEGIN='// >>> integration_sync: added by deploy/bitrix/install.sh, removed by rollback.sh'
MARK_END='// <<< integration_sync'
INCLUDE="require_once dirname(__DIR__, 2) . '/local/php_interface/integration_sync/include.php';"

die() { echo "install.sh: $*" >&2; exit 1; }

[[ $# -eq 1 && -d "$1" ]] || die "usage: install.sh SITE_ROOT (the site's document root)"
command -v php >/dev/null || die "php (the CLI) is required"
SITE="$(cd "$1" && pwd)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)-$$"
MODULE="$SITE/local/php_interface/integration_sync"
HOOKDIR="$SITE/bitrix/tools/webhook"

# Bitrix includes local/php_interface/init.php when it exists, else bitrix/php_interface/init.php (never
# both): edit the one in use, and create local/ only when there is none (a new local/init.php would
# silently switch off the site's bitrix/php_interface/init.php).
if [[ -f "$SITE/local/php_interface/init.php" ]]; then
    INIT="$SITE/local/php_interface/init.php"
elif [[ -f "$SITE/bitrix/php_interface/init.php" ]]; then
    INIT="$SITE/bitrix/php_interface/init.php"
else
    INIT="$SITE/local/php_interface/init.php"
    mkdir -p "$(dirname "$INIT")"
    printf '<?php\n' >"$INIT"
    echo "created $INIT"
fi
BACKUP="$INIT.backup.$STAMP"
cp -p "$INIT" "$BACKUP"
echo "backed up $INIT to $BACKUP"

MODULE_BACKUP=""
if [[ -d "$MODULE" ]]; then
    MODULE_BACKUP="$MODULE.backup.$STAMP"
    cp -a "$MODULE" "$MODULE_BACKUP"
fi
HOOK_EXISTED=0
[[ -f "$HOOKDIR/index.php" ]] && HOOK_EXISTED=1 && cp -p "$HOOKDIR/index.php" "$HOOKDIR/index.php.backup.$STAMP"

restore() {
    echo "install.sh: $1; restoring" >&2
    cp -p "$BACKUP" "$INIT"
    rm -rf "$MODULE"
    [[ -n "$MODULE_BACKUP" ]] && mv "$MODULE_BACKUP" "$MODULE"
    if [[ $HOOK_EXISTED == 1 ]]; then
        mv "$HOOKDIR/index.php.backup.$STAMP" "$HOOKDIR/index.php"
    else
        rm -f "$HOOKDIR/index.php" "$HOOKDIR/.htaccess"
    fi
    exit 1
}

mkdir -p "$MODULE" "$HOOKDIR"
cp -a "$SRC/local/php_interface/integration_sync/." "$MODULE/"
if [[ ! -f "$MODULE/config.php" ]]; then
    cp "$MODULE/config.php.example" "$MODULE/config.php"
    chmod 640 "$MODULE/config.php"
    echo "created $MODULE/config.php: fill in receiver_url, webhook_token and bitrix_webhook_key"
fi
cp -p "$SRC/bitrix/tools/webhook/index.php" "$SRC/bitrix/tools/webhook/.htaccess" "$HOOKDIR/"

if grep -qF "$MARK_BEGIN" "$INIT"; then
    echo "init.php already includes the module: not changed"
else
    # does the file end inside PHP code, or in HTML / after a closing tag?
    mode="$(php -r '$t = token_get_all((string) file_get_contents($argv[1])); $l = end($t);
        echo ($t === [] || (is_array($l) && in_array($l[0], [T_INLINE_HTML, T_CLOSE_TAG], true))) ? "html" : "php";' "$INIT")"
    [[ -s "$INIT" && "$(tail -c1 "$INIT")" != "" ]] && printf '\n' >>"$INIT"
    if [[ $mode == html ]]; then
        printf '<?php %s\n%s\n%s ?>\n' "$MARK_BEGIN" "$INCLUDE" "$MARK_END" >>"$INIT"
    else
        printf '%s\n%s\n%s\n' "$MARK_BEGIN" "$INCLUDE" "$MARK_END" >>"$INIT"
    fi
    echo "added the include to $INIT"
fi

while IFS= read -r -d '' file; do
    php -l "$file" >/dev/null 2>&1 || restore "syntax error in $file: $(php -l "$file" 2>&1 | head -1)"
done < <(find "$INIT" "$MODULE" "$HOOKDIR/index.php" -name '*.php' -print0)

if [[ "${ISYNC_SKIP_SETUP:-0}" == 1 ]]; then
    echo "setup skipped (ISYNC_SKIP_SETUP=1): run php $MODULE/setup.php install $SITE"
elif [[ -f "$SITE/bitrix/modules/main/include/prolog_before.php" ]]; then
    php "$MODULE/setup.php" install "$SITE" || restore "setup.php install failed"
else
    echo "Bitrix not found under $SITE: create the queue table and register the agent by hand:"
    php "$MODULE/setup.php" sql
    echo "-- then: php $MODULE/setup.php install SITE_ROOT (or CAgent::AddAgent('\\IntegrationSyncAgent::send();', '', 'N', 60))"
fi
echo "installed; agents must run from cron (see the README: cron_events.php)"
