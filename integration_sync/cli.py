"""The `integration-sync` command: start the stack, serve the sandbox, and other operator tools."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

# Variables whose presence means "real accounts are configured"; without any, `up` uses the sandbox.
CREDENTIAL_VARS = ("ABCP_BASE_URL", "ABCP_USERPSW", "B24_WEBHOOK_URL", "KASPI_TOKEN", "AMO_BASE_URL")


def _load_dotenv(path: Path) -> None:
    if path.exists():
        from dotenv import load_dotenv

        load_dotenv(path, override=False)


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process for {url} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _init_instance(home: str) -> None:
    """Create (or migrate) the instance's SQLite storage once, here, before the webserver's and the
    daemon's code servers start: on a new DAGSTER_HOME they would otherwise race to create it, and the
    loser fails to load the code location ("Error while importing code")."""
    import dagster as dg

    with dg.DagsterInstance.from_config(home):
        pass


def cmd_up(args: argparse.Namespace) -> int:
    """Start the sandbox (when no credentials are configured), the Dagster webserver and daemon."""
    root = Path(args.project_dir).resolve()
    _load_dotenv(root / ".env")
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(root / "dagster_home"))
    env.setdefault("INTEGRATION_SYNC_DATA_DIR", str(root / "data"))
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
    _init_instance(env["DAGSTER_HOME"])
    procs: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM (systemd, docker stop) stops the children like Ctrl-C

    signal.signal(signal.SIGTERM, stop)

    def start(argv: Sequence[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), env=env, cwd=root)  # noqa: S603 - our own executables
        procs.append(proc)
        return proc

    try:
        sandbox = args.sandbox or not any(env.get(name) for name in CREDENTIAL_VARS)
        if sandbox:
            from integration_sync.sandbox.env import sandbox_env

            # The sandbox's accounts are new at every start: so are its warehouse and token store.
            data = root / "data" / "sandbox"
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            env["INTEGRATION_SYNC_DATA_DIR"] = str(data)
            env.pop("WAREHOUSE_PATH", None)

            base = f"http://{args.host}:{args.sandbox_port}"
            proc = start(
                [_bin("integration-sync"), "sandbox", "serve", "--host", args.host, "--port", str(args.sandbox_port)]
            )
            _wait_http(f"{base}/_sandbox/stats", 60, proc)
            own_secret = env.get("PLATFORM_WEBHOOK_SECRET")
            env.update(sandbox_env(base, f"http://{args.host}:{args.webhook_port}/webhook/payment"))
            if own_secret:  # .env's secret wins over the platform emulator's published one
                env["PLATFORM_WEBHOOK_SECRET"] = own_secret
            print(f"sandbox: no credentials in .env, every connector points at {base}", flush=True)
        if env.get("PLATFORM_WEBHOOK_SECRET"):
            hook = start(
                [_bin("integration-sync"), "webhooks", "serve", "--host", args.host, "--port", str(args.webhook_port)]
            )
            _wait_http(f"http://{args.host}:{args.webhook_port}/webhook/health", 60, hook)
            print(f"webhook receiver: http://{args.host}:{args.webhook_port}/webhook/payment", flush=True)
        else:
            print("webhook receiver not started: PLATFORM_WEBHOOK_SECRET is not set", flush=True)
        workspace = str(root / "workspace.yaml")
        web = start([_bin("dagster-webserver"), "-w", workspace, "-h", args.host, "-p", str(args.port)])
        start([_bin("dagster-daemon"), "run", "-w", workspace])
        _wait_http(f"http://{args.host}:{args.port}/server_info", 180, web)
        print(f"Dagster UI: http://{args.host}:{args.port}  (Ctrl-C stops everything)", flush=True)
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def cmd_webhooks_serve(args: argparse.Namespace) -> int:
    from integration_sync.webhooks.server import serve
    from integration_sync.webhooks.settings import ReceiverSettings

    try:
        settings = ReceiverSettings.from_env()
    except ValueError as exc:  # its message names the variable
        print(f"integration-sync: error: {exc}", file=sys.stderr)
        return 2
    serve(settings, args.host, args.port)
    return 0


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from integration_sync.sandbox.server import SandboxConfig, serve

    config = SandboxConfig(seed=args.seed, abcp_users=args.abcp_users, days=args.days, kaspi_orders=args.kaspi_orders)
    serve(config, args.host, args.port)
    return 0


def cmd_sandbox_env(args: argparse.Namespace) -> int:
    from integration_sync.sandbox.env import sandbox_env

    webhook_url = f"http://{args.webhook_host}:{args.webhook_port}/webhook/payment"
    for key, value in sandbox_env(f"http://{args.host}:{args.port}", webhook_url).items():
        print(f"export {key}={_quote(value)}")
    return 0


def cmd_sandbox_send_payments(args: argparse.Namespace) -> int:
    """Play the education platform: send signed payment webhooks to the receiver, print a JSON summary."""
    from integration_sync.sandbox.platform import Customer, fetch_known_customers, send_payments

    _load_dotenv(Path(args.project_dir).resolve() / ".env")
    secret = os.environ.get("PLATFORM_WEBHOOK_SECRET", "")
    if not secret.strip():
        print(
            "error: PLATFORM_WEBHOOK_SECRET is not set: the receiver's signing secret, from the environment or "
            '.env (for the sandbox: eval "$(integration-sync sandbox env)")',
            file=sys.stderr,
        )
        return 2
    url = (
        args.url
        or os.environ.get("WEBHOOK_URL")
        or (
            f"http://{os.environ.get('WEBHOOK_HOST') or '127.0.0.1'}:{os.environ.get('WEBHOOK_PORT') or '8001'}"
            "/webhook/payment"
        )
    )
    sandbox_url = args.sandbox_url or os.environ.get("SANDBOX_BASE_URL")
    known: list[Customer] = []
    if not sandbox_url:
        print("warning: no --sandbox-url or SANDBOX_BASE_URL: sending new customers only", file=sys.stderr)
    else:
        try:
            known = fetch_known_customers(sandbox_url)
        except (httpx.HTTPError, ValueError) as exc:
            print(
                f"warning: amoCRM sandbox contacts unavailable at {sandbox_url} ({type(exc).__name__}): "
                "sending new customers only",
                file=sys.stderr,
            )
    try:
        summary = send_payments(
            url,
            secret,
            args.count,
            rate=args.rate,
            duplicates=args.duplicates,
            bad_signatures=args.bad_signatures,
            concurrency=args.concurrency,
            seed=args.seed,
            known_customers=known,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    return 0


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _env_port(name: str, default: int) -> int:
    """A port from the environment, named when it is not one (a bad .env value, not a traceback)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"integration-sync: error: {name} must be a port number (1-65535), got {raw[:40]!r}")
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the sandbox if needed, the Dagster webserver and daemon")
    up.add_argument("--host", default=os.environ.get("INTEGRATION_SYNC_HOST", "127.0.0.1"))
    up.add_argument("--port", type=int, default=_env_port("DAGSTER_PORT", 3000))
    up.add_argument("--sandbox-port", type=int, default=_env_port("SANDBOX_PORT", 8787))
    up.add_argument("--webhook-port", type=int, default=_env_port("WEBHOOK_PORT", 8001))
    up.add_argument("--sandbox", action="store_true", help="use the sandbox even if credentials are set")
    up.add_argument("--project-dir", default=".")
    up.set_defaults(func=cmd_up)

    webhooks = sub.add_parser("webhooks", help="the webhook receiver (payments)")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    receiver = webhooks_sub.add_parser("serve", help="receive signed webhooks into the inbox")
    receiver.add_argument("--host", default=os.environ.get("WEBHOOK_HOST", "127.0.0.1"))
    receiver.add_argument("--port", type=int, default=_env_port("WEBHOOK_PORT", 8001))
    receiver.set_defaults(func=cmd_webhooks_serve)

    sandbox = sub.add_parser("sandbox", help="the emulators of every external API")
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = sandbox_sub.add_parser("serve", help="serve the emulators over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--abcp-users", type=int, default=200)
    serve.add_argument("--days", type=int, default=30)
    serve.add_argument("--kaspi-orders", type=int, default=300)
    serve.set_defaults(func=cmd_sandbox_serve)
    env = sandbox_sub.add_parser("env", help="print export lines pointing every connector at the sandbox")
    env.add_argument("--host", default="127.0.0.1")
    env.add_argument("--port", type=int, default=8787)
    env.add_argument("--webhook-host", default="127.0.0.1", help="the receiver WEBHOOK_URL points at")
    env.add_argument("--webhook-port", type=int, default=8001)
    env.set_defaults(func=cmd_sandbox_env)
    send = sandbox_sub.add_parser(
        "send-payments", help="play the education platform: send signed payment webhooks, print a JSON summary"
    )
    send.add_argument("--count", type=_positive_int, required=True, help="requests to send")
    send.add_argument("--rate", type=_positive_float, help="requests per second (default: as fast as possible)")
    send.add_argument("--duplicates", type=_share, default=0.0, help="share re-sending a sent payment (409)")
    send.add_argument("--bad-signatures", type=_share, default=0.0, help="share sent wrongly signed (401)")
    send.add_argument("--url", help="default $WEBHOOK_URL, else http://$WEBHOOK_HOST:$WEBHOOK_PORT/webhook/payment")
    send.add_argument("--sandbox-url", help="amoCRM sandbox for known customers (default $SANDBOX_BASE_URL)")
    send.add_argument("--seed", type=int, help="same seed, same payments (default: a new one, in the summary)")
    send.add_argument("--concurrency", type=_positive_int, default=8, help="parallel connections")
    send.add_argument("--project-dir", default=".", help="where .env is read from")
    send.set_defaults(func=cmd_sandbox_send_payments)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
