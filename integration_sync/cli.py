"""The `integration-sync` command: start the stack, serve the sandbox, and other operator tools."""

from __future__ import annotations

import argparse
import os
import secrets
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


def cmd_up(args: argparse.Namespace) -> int:
    """Start the sandbox (when no credentials are configured), the Dagster webserver and daemon."""
    root = Path(args.project_dir).resolve()
    _load_dotenv(root / ".env")
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(root / "dagster_home"))
    env.setdefault("INTEGRATION_SYNC_DATA_DIR", str(root / "data"))
    Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
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
            env.update(sandbox_env(base))
            # the receiver needs a signing secret; the sandbox makes one up for this session
            env.setdefault("PLATFORM_WEBHOOK_SECRET", secrets.token_hex(16))
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

    serve(ReceiverSettings.from_env(), args.host, args.port)
    return 0


def cmd_sandbox_serve(args: argparse.Namespace) -> int:
    from integration_sync.sandbox.server import SandboxConfig, serve

    config = SandboxConfig(seed=args.seed, abcp_users=args.abcp_users, days=args.days, kaspi_orders=args.kaspi_orders)
    serve(config, args.host, args.port)
    return 0


def cmd_sandbox_env(args: argparse.Namespace) -> int:
    from integration_sync.sandbox.env import sandbox_env

    for key, value in sandbox_env(f"http://{args.host}:{args.port}").items():
        print(f"export {key}={_quote(value)}")
    return 0


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the sandbox if needed, the Dagster webserver and daemon")
    up.add_argument("--host", default=os.environ.get("INTEGRATION_SYNC_HOST", "127.0.0.1"))
    up.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_PORT", "3000")))
    up.add_argument("--sandbox-port", type=int, default=int(os.environ.get("SANDBOX_PORT", "8787")))
    up.add_argument("--webhook-port", type=int, default=int(os.environ.get("WEBHOOK_PORT", "8001")))
    up.add_argument("--sandbox", action="store_true", help="use the sandbox even if credentials are set")
    up.add_argument("--project-dir", default=".")
    up.set_defaults(func=cmd_up)

    webhooks = sub.add_parser("webhooks", help="the webhook receiver (payments)")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True)
    receiver = webhooks_sub.add_parser("serve", help="receive signed webhooks into the inbox")
    receiver.add_argument("--host", default=os.environ.get("WEBHOOK_HOST", "127.0.0.1"))
    receiver.add_argument("--port", type=int, default=int(os.environ.get("WEBHOOK_PORT", "8001")))
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
    env.set_defaults(func=cmd_sandbox_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
