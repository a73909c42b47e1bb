<?php
/**
 * Included once from init.php (the line install.sh adds): loads the module, registers the order handler
 * and defines the agent. Touches no Bitrix core file.
 */

declare(strict_types=1);

require_once __DIR__ . '/payload.php';
require_once __DIR__ . '/queue.php';
require_once __DIR__ . '/handler.php';

if (!class_exists('IntegrationSyncAgent', false)) {
    /** The Bitrix agent (registered by setup.php as `\IntegrationSyncAgent::send();`). */
    final class IntegrationSyncAgent
    {
        public static function send(): string
        {
            try {
                \IntegrationSync\Handler\send_due();
            } catch (\Throwable $error) {
                \AddMessage2Log('integration_sync: agent failed: ' . get_class($error) . ': ' . $error->getMessage(), 'integration_sync');
            }
            // an agent stays scheduled by returning its own call
            return \IntegrationSync\Handler\AGENT;
        }
    }
}

if (class_exists(\Bitrix\Main\EventManager::class)) {
    \Bitrix\Main\EventManager::getInstance()->addEventHandler(
        'sale',
        'OnSaleOrderSaved',
        '\IntegrationSync\Handler\on_order_saved',
    );
}
