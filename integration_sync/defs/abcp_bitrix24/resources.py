"""The «Пользователи» pipeline settings of the ABCP → Bitrix24 flow (the seed's B24_* and UF_* vars)."""

from __future__ import annotations

import os

import dagster as dg

from integration_sync.defs.abcp_bitrix24.mapping import DealSettings


class UsersPipelineResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where ABCP users' deals go in Bitrix24 and which UF fields hold the ABCP values."""

    category_id: int
    stage_id: str
    uf_user_id: str
    uf_inn: str
    uf_saldo: str
    title_prefix: str = "ABCP Регистрация:"

    def settings(self) -> DealSettings:
        return DealSettings(
            category_id=self.category_id,
            stage_id=self.stage_id,
            uf_user_id=self.uf_user_id,
            uf_inn=self.uf_inn,
            uf_saldo=self.uf_saldo,
            title_prefix=self.title_prefix,
        )


def users_pipeline_resource() -> UsersPipelineResource:
    return UsersPipelineResource(
        category_id=dg.EnvVar.int("B24_DEAL_CATEGORY_ID_USERS"),
        stage_id=dg.EnvVar("B24_DEAL_STAGE_NEW_USERS"),
        uf_user_id=dg.EnvVar("UF_B24_DEAL_ABCP_USER_ID"),
        uf_inn=dg.EnvVar("UF_B24_DEAL_INN"),
        uf_saldo=dg.EnvVar("UF_B24_DEAL_SALDO"),
        title_prefix=os.environ.get("B24_DEAL_TITLE_PREFIX") or "ABCP Регистрация:",
    )
