"""`integration-sync amocrm authorize`: the OAuth first authorization of an account (the seeds' OAuth
callback / `/oauth/exchange`). Prints amoCRM's authorization URL with a random `state`, takes the URL the
browser was redirected to (its `state` checked) or the bare code, exchanges the code through the
connector and stores the pair in the account's token store, where every flow on that account reads it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

from integration_sync.connectors.amocrm_auth import AmoAuth, TokenStore, account_root
from integration_sync.defs.resources import AmoCrmResource

AUTHORIZE_URL = "https://www.amocrm.ru/oauth"


class AuthorizeError(Exception):
    """A refused answer: its message is shown to the operator (it never holds a code or token)."""


def authorization_url(client_id: str, state: str, base: str = AUTHORIZE_URL) -> str:
    """amoCRM's consent page; `mode=post_message` makes it redirect the browser to the integration's
    redirect URI with `code`, `state` and `referer` (the account's host) in the query."""
    return f"{base}?{urlencode({'client_id': client_id, 'state': state, 'mode': 'post_message'})}"


def new_state() -> str:
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Answer:
    code: str
    referer: str | None


def parse_answer(text: str, state: str | None) -> Answer:
    """The code from a redirect URL (state checked when one is expected) or a bare code."""
    text = text.strip()
    if not text:
        raise AuthorizeError("nothing given: paste the URL the browser landed on, or the code")
    if "://" not in text and "?" not in text and "=" not in text:
        return Answer(text, None)
    query = parse_qs(urlsplit(text).query or text.lstrip("?"))

    def one(name: str) -> str | None:
        values = query.get(name)
        return values[0] if values else None

    if one("error"):
        raise AuthorizeError(f"amoCRM answered error={one('error')}: the access was not granted")
    code = one("code")
    if not code:
        raise AuthorizeError("the URL has no code parameter: paste the URL the browser landed on after consent")
    got = one("state")
    if state is not None and got != state:
        raise AuthorizeError("the URL's state does not match this authorization: start again (possible CSRF)")
    return Answer(code, one("referer"))


def exchange(resource: AmoCrmResource, answer: Answer) -> dict[str, str]:
    """Trade the code for a pair and store it where `AmoCrmResource.client()` reads it."""
    root = account_root(resource.base_url)
    host = urlsplit(root).netloc
    if answer.referer and answer.referer.strip().lower() != host.lower():
        raise AuthorizeError(
            f"the code was issued for {answer.referer}, but this account is {host}: check AMO_BASE_URL / --flow"
        )
    path = resource.token_store_path()
    auth = AmoAuth(
        base_url=resource.base_url,
        client_id=resource.client_id,
        client_secret=resource.client_secret,
        redirect_uri=resource.redirect_uri,
        store=TokenStore(path),
        policy=None,
    )
    try:
        pair = auth.exchange_code(answer.code)
    finally:
        auth.close()
    expires = "unknown" if pair.expires_at is None else f"in {int(pair.expires_at - pair.updated_at)} s"
    return {"account": auth.account, "token_store": str(path), "access_token_expires": expires}
