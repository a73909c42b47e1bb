<?php
/**
 * BITRIX_WEBHOOK_URL (/bitrix/tools/webhook/): `status` and `export` of the integration_sync module.
 * The action comes from the path's last segment (Apache: .htaccess beside this file; nginx: README) or
 * from ?action=.
 */

declare(strict_types=1);

define('NO_KEEP_STATISTIC', true);
define('NOT_CHECK_PERMISSIONS', true);
define('NO_AGENT_CHECK', true);
define('STOP_STATISTICS', true);

require $_SERVER['DOCUMENT_ROOT'] . '/bitrix/modules/main/include/prolog_before.php';
require_once $_SERVER['DOCUMENT_ROOT'] . '/local/php_interface/integration_sync/include.php';
require_once $_SERVER['DOCUMENT_ROOT'] . '/local/php_interface/integration_sync/endpoint.php';

$path = (string) parse_url((string) ($_SERVER['REQUEST_URI'] ?? ''), PHP_URL_PATH);
$action = (string) ($_GET['action'] ?? basename(rtrim($path, '/')));
\IntegrationSync\Endpoint\serve($action);
