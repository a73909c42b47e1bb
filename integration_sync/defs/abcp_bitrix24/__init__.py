"""Flow 1: ABCP users → Bitrix24 contacts and «Пользователи» deals (asset group `abcp_bitrix24`)."""
