<?php
/**
 * Run by install.sh / rollback.sh with the site's PHP: `php setup.php install|uninstall|sql SITE_ROOT`.
 * install: creates the queue table and registers the agent (both idempotent); uninstall: removes the
 * agent (the table and its rows stay: drop it by hand with `sql`'s DROP when no longer wanted);
 * sql: prints the SQL only (for a DBA, or a site where Bitrix cannot be booted from the CLI).
 */

declare(strict_types=1);

require_once __DIR__ . '/queue.php';

use IntegrationSync\Queue;

[$self, $command, $root] = $argv + [null, '', ''];
if ($command === 'sql') {
    echo Queue\CREATE_SQL, ";\n-- to remove it: ", Queue\DROP_SQL, ";\n";
    exit(0);
}
if (!in_array($command, ['install', 'uninstall'], true) || !is_file($root . '/bitrix/modules/main/include/prolog_before.php')) {
    fwrite(STDERR, "usage: php setup.php install|uninstall|sql SITE_ROOT (SITE_ROOT with bitrix/modules/main)\n");
    exit(2);
}
$_SERVER['DOCUMENT_ROOT'] = realpath($root);
define('NO_KEEP_STATISTIC', true);
define('NOT_CHECK_PERMISSIONS', true);
define('NO_AGENT_CHECK', true);
require $_SERVER['DOCUMENT_ROOT'] . '/bitrix/modules/main/include/prolog_before.php';
require_once __DIR__ . '/include.php';

$agent = \IntegrationSync\Handler\AGENT;
if ($command === 'install') {
    \Bitrix\Main\Application::getConnection()->queryExecute(Queue\CREATE_SQL);
    $found = \CAgent::GetList([], ['NAME' => $agent])->Fetch();
    if (!$found) {
        // every 60 s, counted from the end of a run ("N": no catch-up runs after a pause)
        \CAgent::AddAgent($agent, '', 'N', 60);
    }
    echo "integration_sync: queue table ready, agent ", $found ? 'already registered' : 'registered', "\n";
} else {
    \CAgent::RemoveAgent($agent, '');
    echo "integration_sync: agent removed (table integration_sync_queue kept)\n";
}
