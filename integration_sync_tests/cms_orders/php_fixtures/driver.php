<?php
/**
 * Test driver: runs calls into the shop module read as JSON from stdin and prints their results as JSON.
 * Input: [{"fn": "IntegrationSync\\order_body", "args": [...]}, ...]; a string argument "hex:<hex>" is
 * passed as those bytes (a cp1251 name). A string result comes back as {"b64": ...} (and a non-UTF-8
 * string inside a result array too); a PHP exception as {"error": ...}. `queue_trace` and `agent_run`
 * run the queue and the agent against a recording stand-in for Bitrix's connection.
 */

declare(strict_types=1);

$module = dirname(__DIR__, 3) . '/deploy/bitrix/local/php_interface/integration_sync';
require_once $module . '/payload.php';
require_once $module . '/queue.php';
require_once $module . '/handler.php';
require_once $module . '/endpoint.php';

/** A stand-in for Bitrix's connection: records the SQL, answers SELECTs with `$rows`. */
final class RecordingDb
{
    public array $sql = [];

    public function __construct(private array $rows, private int $affected)
    {
    }

    public function queryExecute(string $sql): void
    {
        $this->sql[] = $sql;
    }

    public function query(string $sql): object
    {
        $this->sql[] = $sql;
        $rows = $this->rows;
        return new class ($rows) {
            public function __construct(private array $rows)
            {
            }

            public function fetch(): array|false
            {
                return array_shift($this->rows) ?? false;
            }
        };
    }

    public function getAffectedRowsCount(): int
    {
        return $this->affected;
    }
}

function decode_args(mixed $value): mixed
{
    if (is_string($value) && str_starts_with($value, 'hex:')) {
        return hex2bin(substr($value, 4));
    }
    return is_array($value) ? array_map('decode_args', $value) : $value;
}

/** Strings that are not UTF-8 (inside a result array) as {"b64": ...}. */
function bytes_safe(mixed $value): mixed
{
    if (is_string($value) && preg_match('//u', $value) !== 1) {
        return ['b64' => base64_encode($value)];
    }
    return is_array($value) ? array_map('bytes_safe', $value) : $value;
}

function queue_trace(array $row, int $affected, int $now): array
{
    $db = new RecordingDb([$row], $affected);
    IntegrationSync\Queue\enqueue($db, 1234, "{\"x\":\"\xC8\"}", $now);
    $due = IntegrationSync\Queue\due($db, $now, 10);
    $claimed = $due !== [] && IntegrationSync\Queue\claim($db, $due[0], $now);
    $next = $claimed ? IntegrationSync\Queue\mark_failed($db, $due[0], 'HTTP 503', $now) : null;
    return ['sql' => $db->sql, 'due' => $due, 'claimed' => $claimed, 'next' => $next];
}

/** One agent run (`send_due`) over `$rows` as the due rows, with `$config`: the SQL it ran. */
function agent_run(array $rows, array $config): array
{
    $db = new RecordingDb($rows, 1);
    IntegrationSync\Handler\send_due($config, $db);
    return $db->sql;
}

$out = [];
foreach (json_decode((string) stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR) as $call) {
    $fn = $call['fn'];
    if (!in_array($fn, ['queue_trace', 'agent_run'], true) && !str_starts_with($fn, 'IntegrationSync\\')) {
        throw new InvalidArgumentException('not a module function: ' . $fn);
    }
    try {
        $result = $fn(...decode_args($call['args']));
        $out[] = is_string($result) ? ['b64' => base64_encode($result)] : ['value' => bytes_safe($result)];
    } catch (Throwable $error) {
        $out[] = ['error' => get_class($error) . ': ' . $error->getMessage()];
    }
}
echo json_encode($out, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_THROW_ON_ERROR);
