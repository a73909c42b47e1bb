"""The cms_orders flow: Bitrix CMS shop orders ↔ Bitrix24 deals (issue 13; being built)."""
