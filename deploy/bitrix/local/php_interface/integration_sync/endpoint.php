<?php
/**
 * The key-protected endpoint (`BITRIX_WEBHOOK_URL` = https://shop/bitrix/tools/webhook/, key in X-Api-Key):
 * `POST status` sets an order's status, `GET export` pages orders, users or products for the migration.
 * The checks, the paging arithmetic and the answers are pure functions (tested with php-cli); the Bitrix
 * part (`serve` and the `bitrix_*` functions) only loads and saves.
 */

declare(strict_types=1);

namespace IntegrationSync\Endpoint;

use function IntegrationSync\iso_date;
use function IntegrationSync\int_id;
use function IntegrationSync\money;
use function IntegrationSync\order_object;
use function IntegrationSync\text;

const PAGE_SIZE_MAX = 500;
const PAGE_SIZE_DEFAULT = 200;
const ENTITIES = ['orders', 'users', 'products'];

/** The key, compared in constant time; an unset key refuses everything. */
function key_ok(?string $given, string $expected): bool
{
    return $expected !== '' && $given !== null && hash_equals($expected, $given);
}

function error(int $code, string $message): array
{
    return [$code, ['ok' => false, 'error' => $message]];
}

/** The status request's body: ['order_id' => int, 'status_id' => string], or an error [code, answer]. */
function status_request(string $body): array
{
    $data = json_decode($body, true);
    if (!is_array($data) || array_is_list($data) && $data !== []) {
        return ['error' => error(400, 'body must be a JSON object')];
    }
    $orderId = $data['order_id'] ?? null;
    $statusId = $data['status_id'] ?? null;
    if (!is_int($orderId) || $orderId <= 0 || !is_string($statusId) || $statusId === '' || strlen($statusId) > 32) {
        return ['error' => error(400, 'order_id (integer) and status_id (string) are required')];
    }
    return ['order_id' => $orderId, 'status_id' => $statusId];
}

/**
 * What to do for a status request, given the order's current status (null: no such order) and the
 * shop's statuses: [code, answer, save?]. "Already in that status" is a success without a save.
 */
function status_decision(?string $current, array $known, int $orderId, string $statusId): array
{
    if ($current === null) {
        return [...error(404, 'order not found'), false];
    }
    if (!in_array($statusId, $known, true)) {
        return [...error(422, substr('unknown status ' . $statusId, 0, 80)), false];
    }
    $changed = $current !== $statusId;
    return [200, ['ok' => true, 'order_id' => $orderId, 'status_id' => $statusId, 'changed' => $changed], $changed];
}

/** The status ids from `OrderStatus::getAllStatuses()` (a list of ids, or ids as keys). */
function status_ids(array $statuses): array
{
    return array_map('strval', array_is_list($statuses) ? $statuses : array_keys($statuses));
}

/**
 * The export query: ['entity', 'from' (unix, inclusive), 'to' (unix, exclusive), 'page', 'size'] with the
 * days read in `$timezone`, or an error [code, answer].
 */
function export_request(array $query, string $timezone): array
{
    $entity = $query['entity'] ?? null;
    if (!in_array($entity, ENTITIES, true)) {
        return ['error' => error(400, 'entity must be orders, users or products')];
    }
    $bounds = [];
    foreach (['date_from' => 0, 'date_to' => 1] as $name => $after) {
        $value = $query[$name] ?? null;
        if ($value === null || $value === '') {
            $bounds[] = null;
            continue;
        }
        $day = is_string($value) ? \DateTimeImmutable::createFromFormat('!Y-m-d', $value, new \DateTimeZone($timezone)) : false;
        if ($day === false || $day->format('Y-m-d') !== $value) {
            return ['error' => error(400, $name . ' must be YYYY-MM-DD')];
        }
        $bounds[] = $day->modify('+' . $after . ' day')->getTimestamp();
    }
    $page = $query['page'] ?? '1';
    $size = $query['page_size'] ?? (string) PAGE_SIZE_DEFAULT;
    if (!is_string($page) || !is_string($size) || !preg_match('/^\d{1,9}$/', $page) || !preg_match('/^\d{1,9}$/', $size)) {
        return ['error' => error(400, 'page and page_size must be integers')];
    }
    if ((int) $page < 1 || (int) $size < 1 || (int) $size > PAGE_SIZE_MAX) {
        return ['error' => error(400, 'page must be >= 1 and page_size 1..' . PAGE_SIZE_MAX)];
    }
    return ['entity' => $entity, 'from' => $bounds[0], 'to' => $bounds[1], 'page' => (int) $page, 'size' => (int) $size];
}

/** The row offset of a page. */
function offset(int $page, int $size): int
{
    return ($page - 1) * $size;
}

/** The export answer: {"items", "page", "pages", "total"} ("pages" 0 when nothing matches). */
function export_answer(array $items, int $page, int $size, int $total): array
{
    return ['items' => $items, 'page' => $page, 'pages' => intdiv($total + $size - 1, $size), 'total' => $total];
}

function user_item(array $row, array $config): array
{
    $config = \IntegrationSync\settings($config);
    return [
        'ID' => int_id($row['ID'] ?? null),
        'NAME' => text($row['NAME'] ?? '', $config),
        'LAST_NAME' => text($row['LAST_NAME'] ?? '', $config),
        'EMAIL' => text($row['EMAIL'] ?? '', $config),
        'PERSONAL_PHONE' => text($row['PERSONAL_PHONE'] ?? '', $config),
        'DATE_REGISTER' => iso_date($row['DATE_REGISTER'] ?? null, (string) $config['timezone']),
    ];
}

function product_item(array $row, array $config): array
{
    $config = \IntegrationSync\settings($config);
    return [
        'ID' => int_id($row['ID'] ?? null),
        'NAME' => text($row['NAME'] ?? '', $config),
        'PRICE' => money($row['PRICE'] ?? 0),
        'ACTIVE' => ($row['ACTIVE'] ?? 'Y') === 'N' ? 'N' : 'Y',
    ];
}

// ------------------------------------------------------------------------------- Bitrix glue

/** Answer one request to /bitrix/tools/webhook/{status|export} (after Bitrix's prolog). */
function serve(string $action): void
{
    $config = \IntegrationSync\Handler\config();
    $method = $_SERVER['REQUEST_METHOD'] ?? 'GET';
    if (!key_ok($_SERVER['HTTP_X_API_KEY'] ?? null, (string) $config['bitrix_webhook_key'])) {
        [$code, $answer] = error(401, 'invalid key');
    } elseif ($action === 'status' && $method === 'POST') {
        [$code, $answer] = bitrix_status((string) file_get_contents('php://input'));
    } elseif ($action === 'export' && $method === 'GET') {
        [$code, $answer] = bitrix_export($_GET, $config);
    } else {
        [$code, $answer] = error(404, 'no such action');
    }
    respond($code, $answer);
}

function respond(int $code, array $answer): void
{
    while (ob_get_level() > 0) {
        ob_end_clean();
    }
    http_response_code($code);
    header('Content-Type: application/json; charset=utf-8');
    echo \IntegrationSync\encode($answer);
}

function bitrix_status(string $body): array
{
    $request = status_request($body);
    if (isset($request['error'])) {
        return $request['error'];
    }
    \Bitrix\Main\Loader::includeModule('sale');
    $order = \Bitrix\Sale\Order::load($request['order_id']);
    $current = $order === null ? null : (string) $order->getField('STATUS_ID');
    $known = status_ids(\Bitrix\Sale\OrderStatus::getAllStatuses());
    [$code, $answer, $save] = status_decision($current, $known, $request['order_id'], $request['status_id']);
    if ($save) {
        $result = $order->setField('STATUS_ID', $request['status_id']);
        if ($result->isSuccess()) {
            $result = $order->save();
        }
        if (!$result->isSuccess()) {
            return error(500, substr(implode('; ', $result->getErrorMessages()) ?: 'order not saved', 0, 500));
        }
    }
    return [$code, $answer];
}

function bitrix_export(array $query, array $config): array
{
    $request = export_request($query, (string) $config['timezone']);
    if (isset($request['error'])) {
        return $request['error'];
    }
    $range = static function (string $field) use ($request): array {
        $filter = [];
        if ($request['from'] !== null) {
            $filter['>=' . $field] = \Bitrix\Main\Type\DateTime::createFromTimestamp($request['from']);
        }
        if ($request['to'] !== null) {
            $filter['<' . $field] = \Bitrix\Main\Type\DateTime::createFromTimestamp($request['to']);
        }
        return $filter;
    };
    $params = ['limit' => $request['size'], 'offset' => offset($request['page'], $request['size']), 'count_total' => true];
    $items = [];
    if ($request['entity'] === 'orders') {
        \Bitrix\Main\Loader::includeModule('sale');
        $rows = \Bitrix\Sale\Order::getList(['select' => ['ID'], 'filter' => $range('DATE_INSERT'), 'order' => ['ID' => 'ASC']] + $params);
        while ($row = $rows->fetch()) {
            $order = \Bitrix\Sale\Order::load((int) $row['ID']);
            if ($order !== null) {
                $items[] = order_object(\IntegrationSync\Handler\order_array($order, null), $config);
            }
        }
    } elseif ($request['entity'] === 'users') {
        $rows = \Bitrix\Main\UserTable::getList([
            'select' => ['ID', 'NAME', 'LAST_NAME', 'EMAIL', 'PERSONAL_PHONE', 'DATE_REGISTER'],
            'filter' => $range('DATE_REGISTER'), 'order' => ['ID' => 'ASC'],
        ] + $params);
        while ($row = $rows->fetch()) {
            $row['DATE_REGISTER'] = \IntegrationSync\Handler\unix($row['DATE_REGISTER']);
            $items[] = user_item($row, $config);
        }
    } else {
        \Bitrix\Main\Loader::includeModule('catalog');
        $rows = \Bitrix\Catalog\PriceTable::getList([
            'select' => ['ID' => 'PRODUCT_ID', 'PRICE', 'NAME' => 'ELEMENT.NAME', 'ACTIVE' => 'ELEMENT.ACTIVE'],
            'filter' => ['=CATALOG_GROUP_ID' => \Bitrix\Catalog\GroupTable::getBasePriceTypeId()],
            'order' => ['PRODUCT_ID' => 'ASC'],
        ] + $params);
        while ($row = $rows->fetch()) {
            $items[] = product_item($row, $config);
        }
    }
    return [200, export_answer($items, $request['page'], $request['size'], (int) $rows->getCount())];
}
