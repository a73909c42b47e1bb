<?php
/**
 * The order webhook body (the contract of issue 13), its signature and the ping: pure functions, no Bitrix.
 *
 * Text that is not valid UTF-8 (a shop that ran in windows-1251 once): the shop knows its own charset,
 * so a string that is not UTF-8 is converted from `legacy_charset` (default windows-1251) with iconv or
 * mbstring; only when neither is installed (or the setting is '') are the raw bytes sent, which our
 * receiver reads as cp1251 and marks. JSON_INVALID_UTF8_SUBSTITUTE is never used: it would lose the name.
 */

declare(strict_types=1);

namespace IntegrationSync;

const ORDER_EVENT = 'order.saved';
const PING_EVENT = 'test';
const PROPERTY_KEYS = ['NAME', 'PHONE', 'EMAIL', 'ADDRESS', 'DELIVERY', 'DELIVERY_DATE'];
const JSON_FLAGS = JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR;
const RAW_MARK = "\x00isync-raw-";

/** The settings with their defaults (config.php.example documents them). */
function settings(array $config): array
{
    return $config + [
        'receiver_url' => '',
        'webhook_token' => '',
        'token_in_body' => false,
        'bitrix_webhook_key' => '',
        'timezone' => '+05:00',
        'site_charset' => 'UTF-8',
        'legacy_charset' => 'windows-1251',
        'timeout_s' => 5,
    ];
}

/** A shop id as an integer (Bitrix hands ids out as digit strings). */
function int_id(mixed $value): ?int
{
    if (is_int($value)) {
        return $value;
    }
    if (is_string($value) && preg_match('/^\s*\d{1,18}\s*$/', $value)) {
        return (int) trim($value);
    }
    return null;
}

/** Money as a decimal string with two places ("15000.00"). */
function money(mixed $value): string
{
    if (is_string($value)) {
        $value = str_replace([' ', "\u{00a0}", ','], ['', '', '.'], $value);
    }
    return number_format(round((float) $value, 2), 2, '.', '');
}

/** A quantity: an integer when whole (1), else a number (1.5). */
function quantity(mixed $value): int|float
{
    $number = (float) (is_string($value) ? str_replace(',', '.', $value) : $value);
    return floor($number) === $number && abs($number) < PHP_INT_MAX ? (int) $number : $number;
}

/**
 * ISO 8601 with the offset: from a unix time, a DateTimeInterface, Bitrix's "DD.MM.YYYY HH:MM:SS" or an
 * ISO string (both without an offset read in `timezone`); null for an empty value.
 */
function iso_date(mixed $value, string $timezone): ?string
{
    $zone = new \DateTimeZone($timezone);
    if ($value === null || $value === '') {
        return null;
    }
    if ($value instanceof \DateTimeInterface) {
        $date = \DateTimeImmutable::createFromInterface($value);
    } elseif (is_int($value) || (is_string($value) && ctype_digit($value))) {
        $date = (new \DateTimeImmutable('@' . $value));
    } elseif (is_string($value) && preg_match('/^(\d{2})\.(\d{2})\.(\d{4})(?:\s+(\d{2}):(\d{2})(?::(\d{2}))?)?$/', trim($value), $m)) {
        $text = sprintf('%s-%s-%s %s:%s:%s', $m[3], $m[2], $m[1], $m[4] ?? '00', $m[5] ?? '00', ($m[6] ?? '') ?: '00');
        $date = new \DateTimeImmutable($text, $zone);
    } elseif (is_string($value)) {
        $date = new \DateTimeImmutable($value, $zone);
    } else {
        throw new \InvalidArgumentException('not a date');
    }
    return $date->setTimezone($zone)->format('Y-m-d\TH:i:sP');
}

/** A string as UTF-8 (see the file's docblock), or as RAW_MARK-wrapped raw bytes for `encode`. */
function text(mixed $value, array $config): ?string
{
    if ($value === null) {
        return null;
    }
    $value = (string) $value;
    $site = strtoupper((string) $config['site_charset']);
    if ($site !== '' && $site !== 'UTF-8' && $site !== 'UTF8') {
        return convert($value, $site) ?? raw($value);
    }
    if (preg_match('//u', $value) === 1) {
        return $value;
    }
    $legacy = (string) $config['legacy_charset'];
    return ($legacy === '' ? null : convert($value, $legacy)) ?? raw($value);
}

/** `$value` from `$charset` to UTF-8 with iconv or mbstring; null when neither can. */
function convert(string $value, string $charset): ?string
{
    if (function_exists('iconv')) {
        $out = @iconv($charset, 'UTF-8', $value);
        if (is_string($out)) {
            return $out;
        }
    }
    if (function_exists('mb_convert_encoding')) {
        try {
            $out = mb_convert_encoding($value, 'UTF-8', $charset);
        } catch (\ValueError) {
            return null;
        }
        return is_string($out) ? $out : null;
    }
    return null;
}

function raw(string $value): string
{
    return RAW_MARK . bin2hex($value) . "\x00";
}

/**
 * The contract's `order` object from a plain order array (the handler and the export build it from the
 * Bitrix entity): ids as integers, money as "0.00", dates with offset, properties present only when set.
 */
function order_object(array $order, array $config): array
{
    $config = settings($config);
    $tz = (string) $config['timezone'];
    $props = [];
    foreach (PROPERTY_KEYS as $key) {
        $value = $order['PROPERTIES'][$key] ?? null;
        if ($value !== null && $value !== '') {
            $props[$key] = text($value, $config);
        }
    }
    $basket = [];
    foreach ($order['BASKET'] ?? [] as $line) {
        $basket[] = [
            'PRODUCT_ID' => int_id($line['PRODUCT_ID'] ?? null),
            'NAME' => text($line['NAME'] ?? null, $config),
            'QUANTITY' => quantity($line['QUANTITY'] ?? 1),
            'PRICE' => money($line['PRICE'] ?? 0),
        ];
    }
    $old = $order['OLD_STATUS_ID'] ?? null;
    return [
        'ID' => int_id($order['ID'] ?? null),
        'ACCOUNT_NUMBER' => text((string) ($order['ACCOUNT_NUMBER'] ?? $order['ID'] ?? ''), $config),
        'STATUS_ID' => (string) ($order['STATUS_ID'] ?? 'N'),
        'OLD_STATUS_ID' => $old === null || $old === '' ? null : (string) $old,
        'PRICE' => money($order['PRICE'] ?? 0),
        'CURRENCY' => (string) ($order['CURRENCY'] ?? ''),
        'USER_ID' => int_id($order['USER_ID'] ?? null),
        'PAYED' => ($order['PAYED'] ?? 'N') === 'Y' || ($order['PAYED'] ?? null) === true ? 'Y' : 'N',
        'CANCELED' => ($order['CANCELED'] ?? 'N') === 'Y' || ($order['CANCELED'] ?? null) === true ? 'Y' : 'N',
        'DATE_INSERT' => iso_date($order['DATE_INSERT'] ?? null, $tz),
        'DATE_UPDATE' => iso_date($order['DATE_UPDATE'] ?? $order['DATE_INSERT'] ?? null, $tz),
        'DATE_STATUS' => iso_date($order['DATE_STATUS'] ?? null, $tz),
        'PROPERTIES' => $props === [] ? new \stdClass() : $props,
        'BASKET' => $basket,
    ];
}

/** The webhook body for one save of an order (`$now`: unix time of the save). No token: see `message`. */
function order_body(array $order, bool $isNew, int $now, array $config): string
{
    $config = settings($config);
    return encode([
        'event' => ORDER_EVENT,
        'is_new' => $isNew,
        'sent_at' => iso_date($now, (string) $config['timezone']),
        'order' => order_object($order, $config),
    ]);
}

/** The seed's ping. */
function ping_body(int $now, array $config): string
{
    return encode(['event' => PING_EVENT, 'sent_at' => iso_date($now, (string) settings($config)['timezone'])]);
}

/** UTF-8 JSON; a raw (unconvertible) string goes in as its bytes, JSON-escaped where JSON needs it. */
function encode(array $payload): string
{
    $json = json_encode($payload, JSON_FLAGS);
    // json_encode writes RAW_MARK's NUL bytes as \u0000, which no real text contains
    return (string) preg_replace_callback('/\\\\u0000isync-raw-([0-9a-f]*)\\\\u0000/', static function (array $m): string {
        $bytes = (string) hex2bin($m[1]);
        return (string) preg_replace_callback('/[\x00-\x1f"\\\\]/', static fn (array $c): string => match ($c[0]) {
            '"' => '\\"',
            '\\' => '\\\\',
            default => sprintf('\\u%04x', ord($c[0])),
        }, $bytes);
    }, $json);
}

/** `sha256=<hex HMAC-SHA256 of the raw body>` for the X-Signature header. */
function signature(string $body, string $token): string
{
    return 'sha256=' . hash_hmac('sha256', $body, $token);
}

/**
 * What is sent for a stored body: [body, headers]. Signed by default; with `token_in_body` (the seed's
 * format) the token goes first inside the JSON and there is no signature. The queue never holds the token.
 */
function message(string $body, array $config): array
{
    $config = settings($config);
    $token = (string) $config['webhook_token'];
    $headers = ['Content-Type: application/json; charset=utf-8'];
    if ($config['token_in_body']) {
        $rest = ltrim(substr($body, 1));
        $body = '{"token":' . json_encode($token, JSON_FLAGS) . ($rest === '}' ? '' : ',') . $rest;
        return [$body, $headers];
    }
    $headers[] = 'X-Signature: ' . signature($body, $token);
    return [$body, $headers];
}
