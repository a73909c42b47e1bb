<?php
/**
 * The event queue in the shop's own database (table integration_sync_queue), through Bitrix's connection
 * (`\Bitrix\Main\Application::getConnection()`: queryExecute, query()->fetch, getAffectedRowsCount).
 *
 * The save handler only inserts a row (no network in the visitor's request); the agent sends due rows and
 * retries after 1, 5 and 30 min, then every 30 min, 8 attempts in all (as the sandbox shop's
 * RETRY_DELAYS_S / MAX_ATTEMPTS). A row that was sent or given up keeps its `last_status` (next_attempt_at
 * NULL) for a while so an operator can see what happened; `purge` removes old ones. SQL is MySQL's, kept
 * plain: times are UTC 'Y-m-d H:i:s' computed in PHP, the body a hex literal (raw bytes survive as is).
 */

declare(strict_types=1);

namespace IntegrationSync\Queue;

const TABLE = 'integration_sync_queue';
const RETRY_DELAYS_S = [60, 300, 1800];
const MAX_ATTEMPTS = 8;
const LEASE_S = 120;

const CREATE_SQL = 'CREATE TABLE IF NOT EXISTS integration_sync_queue (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  order_id INT UNSIGNED NULL,
  body MEDIUMBLOB NOT NULL,
  attempts INT UNSIGNED NOT NULL DEFAULT 0,
  next_attempt_at DATETIME NULL,
  last_status VARCHAR(255) NULL,
  created_at DATETIME NOT NULL,
  KEY ix_integration_sync_queue_due (next_attempt_at)
)';
const DROP_SQL = 'DROP TABLE IF EXISTS integration_sync_queue';

/** Seconds to wait after `$attempts` failed attempts; null when the event is given up. */
function next_delay(int $attempts): ?int
{
    if ($attempts >= MAX_ATTEMPTS) {
        return null;
    }
    return RETRY_DELAYS_S[min(max($attempts, 1), count(RETRY_DELAYS_S)) - 1];
}

function sql_time(int $unix): string
{
    return gmdate('Y-m-d H:i:s', $unix);
}

/** The columns a failed attempt sets, for a row that had `$attempts` attempts before this one. */
function failure_fields(int $attempts, string $status, int $now): array
{
    $attempts += 1;
    $delay = next_delay($attempts);
    return [
        'attempts' => $attempts,
        'next_attempt_at' => $delay === null ? null : sql_time($now + $delay),
        'last_status' => status_text(($delay === null ? 'gave up: ' : 'retry: ') . $status),
    ];
}

/** The columns a delivered event sets (a 2xx, a duplicate included). */
function success_fields(int $attempts, string $status): array
{
    return ['attempts' => $attempts + 1, 'next_attempt_at' => null, 'last_status' => status_text('sent: ' . $status)];
}

/** A status for the table: printable ASCII, at most 255 characters. */
function status_text(string $text): string
{
    return substr((string) preg_replace('/[^\x20-\x7e]+/', '?', $text), 0, 255);
}

function literal(mixed $value): string
{
    if ($value === null) {
        return 'NULL';
    }
    if (is_int($value)) {
        return (string) $value;
    }
    // printable ASCII (times, statuses) quoted; anything else as a hex literal, so no charset or
    // escaping question arises for the body's bytes
    $value = (string) $value;
    if (preg_match('/^[\x20-\x7e]*$/', $value) === 1) {
        return "'" . str_replace(['\\', "'"], ['\\\\', "''"], $value) . "'";
    }
    return "X'" . bin2hex($value) . "'";
}

function assignments(array $fields): string
{
    $parts = [];
    foreach ($fields as $column => $value) {
        $parts[] = $column . ' = ' . literal($value);
    }
    return implode(', ', $parts);
}

/** Queue one event, due now. */
function enqueue(object $db, ?int $orderId, string $body, int $now): void
{
    $db->queryExecute(sprintf(
        'INSERT INTO %s (order_id, body, attempts, next_attempt_at, last_status, created_at) VALUES (%s, %s, 0, %s, NULL, %s)',
        TABLE,
        literal($orderId),
        literal($body),
        literal(sql_time($now)),
        literal(sql_time($now)),
    ));
}

/** Due rows, oldest first (not yet claimed: see `claim`). */
function due(object $db, int $now, int $limit): array
{
    $rows = [];
    $result = $db->query(sprintf(
        'SELECT id, order_id, body, attempts, next_attempt_at FROM %s WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= %s ORDER BY id LIMIT %d',
        TABLE,
        literal(sql_time($now)),
        $limit,
    ));
    while ($row = $result->fetch()) {
        $rows[] = ['id' => (int) $row['id'], 'order_id' => $row['order_id'] === null ? null : (int) $row['order_id'],
            'body' => (string) $row['body'], 'attempts' => (int) $row['attempts'],
            'next_attempt_at' => (string) $row['next_attempt_at']];
    }
    return $rows;
}

/**
 * Take a due row for LEASE_S right before sending it (false: another agent run took it first), so two
 * overlapping runs never send one row twice, and a run that crashes mid-send frees it after the lease.
 */
function claim(object $db, array $row, int $now): bool
{
    $db->queryExecute(sprintf(
        'UPDATE %s SET next_attempt_at = %s WHERE id = %d AND next_attempt_at = %s',
        TABLE,
        literal(sql_time($now + LEASE_S)),
        $row['id'],
        literal($row['next_attempt_at']),
    ));
    return $db->getAffectedRowsCount() === 1;
}

function mark_sent(object $db, array $row, string $status): void
{
    $db->queryExecute(sprintf('UPDATE %s SET %s WHERE id = %d', TABLE, assignments(success_fields($row['attempts'], $status)), $row['id']));
}

/** Record a failed attempt; the unix time of the next one, or null when given up. */
function mark_failed(object $db, array $row, string $status, int $now): ?int
{
    $fields = failure_fields($row['attempts'], $status, $now);
    $db->queryExecute(sprintf('UPDATE %s SET %s WHERE id = %d', TABLE, assignments($fields), $row['id']));
    return $fields['next_attempt_at'] === null ? null : strtotime($fields['next_attempt_at'] . ' UTC');
}

/** Remove finished rows (sent or given up) created before `$before`. */
function purge(object $db, int $before): void
{
    $db->queryExecute(sprintf(
        'DELETE FROM %s WHERE next_attempt_at IS NULL AND created_at < %s',
        TABLE,
        literal(sql_time($before)),
    ));
}
