"""The `integration-sync` command: start the stack, serve the sandbox, and other operator tools."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from integration_sync.lib.registry import CommandGroups, plugins
from integration_sync.lib.settings_files import load_dotenv


def credential_vars() -> tuple[str, ...]:
    """Variables whose presence means "real accounts are configured" (each flow names its own);
    without any, `up` uses the sandbox."""
    return tuple(dict.fromkeys(name for flow in plugins() for name in flow.source_vars))


def receiver_vars() -> tuple[str, ...]:
    """Variables of which one set means a flow has receiver routes to serve."""
    return tuple(dict.fromkeys(name for flow in plugins() for name in flow.receiver_vars))


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
    load_dotenv(root / ".env")
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
        sandbox = args.sandbox or not any(env.get(name) for name in credential_vars())
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
            env.update(sandbox_env(base, f"http://{args.host}:{args.webhook_port}"))
            if own_secret:  # .env's secret wins over the platform emulator's published one
                env["PLATFORM_WEBHOOK_SECRET"] = own_secret
            print(f"sandbox: no credentials in .env, every connector points at {base}", flush=True)
        if any(env.get(name) for name in receiver_vars()):
            hook = start(
                [_bin("integration-sync"), "webhooks", "serve", "--host", args.host, "--port", str(args.webhook_port)]
            )
            _wait_http(f"http://{args.host}:{args.webhook_port}/webhook/health", 60, hook)
            print(f"webhook receiver: http://{args.host}:{args.webhook_port}/webhook/", flush=True)
        else:
            print(f"webhook receiver not started: none of {', '.join(receiver_vars())} is set", flush=True)
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


def cmd_doctor(args: argparse.Namespace) -> int:
    from integration_sync import doctor

    load_dotenv(Path(args.project_dir).resolve() / ".env")
    code, text = doctor.run(os.environ, args.flow or (), as_json=args.json)
    print(text, file=sys.stderr if code == 2 else sys.stdout)
    return code


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

    receiver = f"http://{args.webhook_host}:{args.webhook_port}"
    for key, value in sandbox_env(f"http://{args.host}:{args.port}", receiver).items():
        print(f"export {key}={_quote(value)}")
    return 0


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


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

    doctor = sub.add_parser("doctor", help="each flow's configuration: configured, not configured, or what is missing")
    doctor.add_argument("--flow", action="append", help="only this flow (repeatable)")
    doctor.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    doctor.add_argument("--project-dir", default=".", help="where .env is read from")
    doctor.set_defaults(func=cmd_doctor)

    webhooks = sub.add_parser("webhooks", help="the webhook receiver (every flow's routes)")
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
    groups = CommandGroups(root=sub, sandbox=sandbox_sub)
    for flow in plugins():
        if flow.add_commands is not None:
            flow.add_commands(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    load_dotenv(Path(".env"))  # before the parser reads its defaults (ports, hosts) from the environment
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
