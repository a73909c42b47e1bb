<?php
/**
 * Bitrix glue: the `sale` OnSaleOrderSaved handler (reads the order into a plain array and queues its
 * body: never a network call in the visitor's request) and the agent `IntegrationSyncAgent::send()`
 * that delivers due events from cron (see the README: BX_CRONTAB_SUPPORT, cron_events.php).
 */

declare(strict_types=1);

namespace IntegrationSync\Handler;

use Bitrix\Main\Application;
use Bitrix\Main\Event;
use IntegrationSync\Queue;

use function IntegrationSync\order_body;
use function IntegrationSync\settings;

const AGENT = '\IntegrationSyncAgent::send();';
const BATCH = 50;
const RUN_BUDGET_S = 45;
const KEEP_FINISHED_S = 14 * 86400;

/** The settings from config.php next to this file (a missing file: nothing is configured). */
function config(): array
{
    static $config = null;
    if ($config === null) {
        $file = __DIR__ . '/config.php';
        $config = settings(is_file($file) ? (array) require $file : []);
    }
    return $config;
}

/** A `\Bitrix\Main\Type\DateTime` (or null) as unix time. */
function unix(mixed $value): ?int
{
    return is_object($value) && method_exists($value, 'getTimestamp') ? (int) $value->getTimestamp() : null;
}

/** The first non-empty value of the property codes in `$codes` (a shop names its properties itself). */
function property(object $properties, array $codes): ?string
{
    foreach ($properties as $property) {
        $code = (string) $property->getField('CODE');
        if (in_array($code, $codes, true)) {
            $value = $property->getValue();
            if (is_array($value)) {
                $value = implode(', ', array_filter(array_map('strval', $value)));
            }
            if ($value !== null && $value !== '') {
                return (string) $value;
            }
        }
    }
    return null;
}

/** The plain order array `order_object` takes, from a `\Bitrix\Sale\Order`. */
function order_array(object $order, ?string $oldStatus): array
{
    $codes = config()['property_codes'] ?? [];
    $props = $order->getPropertyCollection();
    $delivery = null;
    foreach ($order->getShipmentCollection() as $shipment) {
        if (!$shipment->isSystem()) {
            $delivery = $shipment->getDeliveryName();
            break;
        }
    }
    $basket = [];
    foreach ($order->getBasket() as $item) {
        $basket[] = [
            'PRODUCT_ID' => $item->getProductId(),
            'NAME' => $item->getField('NAME'),
            'QUANTITY' => $item->getQuantity(),
            'PRICE' => $item->getPrice(),
        ];
    }
    return [
        'ID' => $order->getId(),
        'ACCOUNT_NUMBER' => $order->getField('ACCOUNT_NUMBER'),
        'STATUS_ID' => $order->getField('STATUS_ID'),
        'OLD_STATUS_ID' => $oldStatus,
        'PRICE' => $order->getPrice(),
        'CURRENCY' => $order->getCurrency(),
        'USER_ID' => $order->getUserId(),
        'PAYED' => $order->getField('PAYED'),
        'CANCELED' => $order->getField('CANCELED'),
        'DATE_INSERT' => unix($order->getField('DATE_INSERT')),
        'DATE_UPDATE' => unix($order->getField('DATE_UPDATE')) ?? time(),
        'DATE_STATUS' => unix($order->getField('DATE_STATUS')),
        'PROPERTIES' => [
            'NAME' => $props->getPayerName()?->getValue() ?? property($props, $codes['NAME'] ?? ['FIO', 'NAME']),
            'PHONE' => $props->getPhone()?->getValue() ?? property($props, $codes['PHONE'] ?? ['PHONE']),
            'EMAIL' => $props->getUserEmail()?->getValue() ?? property($props, $codes['EMAIL'] ?? ['EMAIL']),
            'ADDRESS' => $props->getAddress()?->getValue() ?? property($props, $codes['ADDRESS'] ?? ['ADDRESS']),
            'DELIVERY' => $delivery,
            'DELIVERY_DATE' => property($props, $codes['DELIVERY_DATE'] ?? ['DELIVERY_DATE']),
        ],
        'BASKET' => $basket,
    ];
}

/** OnSaleOrderSaved: queue the order as saved. Never throws into checkout; a failure is logged. */
function on_order_saved(Event $event): void
{
    try {
        $config = config();
        if ($config['receiver_url'] === '') {
            return;
        }
        $order = $event->getParameter('ENTITY');
        $values = (array) $event->getParameter('VALUES');
        $old = array_key_exists('STATUS_ID', $values) ? (string) $values['STATUS_ID'] : null;
        $body = order_body(order_array($order, $old), (bool) $event->getParameter('IS_NEW'), time(), $config);
        Queue\enqueue(Application::getConnection(), (int) $order->getId(), $body, time());
    } catch (\Throwable $error) {
        // the order is saved either way; the export can still bring it over
        \AddMessage2Log('integration_sync: order not queued: ' . get_class($error) . ': ' . $error->getMessage(), 'integration_sync');
    }
}

/** [delivered, status text] for the receiver's answer: any 2xx ends it (a duplicate is a 2xx too). */
function outcome(int $code, string $answer, string $error = ''): array
{
    if ($code === 0) {
        return [false, 'no answer: ' . ($error === '' ? 'connection failed' : $error)];
    }
    $data = json_decode($answer, true);
    $status = is_array($data) && isset($data['status']) && is_string($data['status']) ? ' ' . $data['status'] : '';
    return [$code >= 200 && $code < 300, 'HTTP ' . $code . $status];
}

/**
 * POST one stored body; [delivered, status text]. With curl when the extension is there (the
 * `transport` setting can force 'curl' or 'stream'), else PHP's own http stream: same timeout, no redirects.
 */
function deliver(string $stored, array $config): array
{
    [$body, $headers] = \IntegrationSync\message($stored, $config);
    $transport = (string) ($config['transport'] ?? '');
    if ($transport === 'curl' || ($transport === '' && function_exists('curl_init'))) {
        return deliver_curl((string) $config['receiver_url'], $body, $headers, (int) $config['timeout_s']);
    }
    return deliver_stream((string) $config['receiver_url'], $body, $headers, (int) $config['timeout_s']);
}

function deliver_curl(string $url, string $body, array $headers, int $timeout): array
{
    $curl = curl_init($url);
    curl_setopt_array($curl, [
        CURLOPT_POST => true,
        CURLOPT_POSTFIELDS => $body,
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_CONNECTTIMEOUT => $timeout,
        CURLOPT_TIMEOUT => $timeout,
        CURLOPT_FOLLOWLOCATION => false,
    ]);
    $answer = curl_exec($curl);
    $code = (int) curl_getinfo($curl, CURLINFO_RESPONSE_CODE);
    $error = curl_error($curl);
    curl_close($curl);
    return outcome(is_string($answer) ? $code : 0, is_string($answer) ? $answer : '', $error);
}

function deliver_stream(string $url, string $body, array $headers, int $timeout): array
{
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => implode("\r\n", $headers),
        'content' => $body,
        'timeout' => $timeout,
        'follow_location' => 0,
        'ignore_errors' => true,
    ]]);
    $answer = @file_get_contents($url, false, $context);
    $status = $http_response_header[0] ?? '';
    if ($answer === false || !preg_match('#^HTTP/\S+\s+(\d{3})#', $status, $match)) {
        // "file_get_contents(<url>): Failed to open stream: ..." without the url
        $message = (string) (error_get_last()['message'] ?? 'connection failed');
        return outcome(0, '', (string) preg_replace('/^[^)]*\\):\\s*/', '', $message));
    }
    return outcome((int) $match[1], $answer);
}

/** One agent run: send due events until the batch or the time budget is used up (`$db`: a test's). */
function send_due(?array $config = null, ?object $db = null): void
{
    $config = $config === null ? config() : settings($config);
    if ($config['receiver_url'] === '') {
        return;
    }
    $db ??= Application::getConnection();
    $started = time();
    foreach (Queue\due($db, $started, BATCH) as $row) {
        if (time() - $started > RUN_BUDGET_S) {
            break;  // the rest stay due for the next run
        }
        if (!Queue\claim($db, $row, time())) {
            continue;
        }
        [$delivered, $status] = deliver($row['body'], $config);
        if ($delivered) {
            Queue\mark_sent($db, $row, $status);
        } else {
            Queue\mark_failed($db, $row, $status, time());
        }
    }
    Queue\purge($db, $started - KEEP_FINISHED_S);
}
