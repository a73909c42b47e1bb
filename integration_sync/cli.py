"""The `integration-sync` command: start the stack, serve the sandbox, and other operator tools."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from integration_sync.lib.registry import CommandGroups, plugins
from integration_sync.lib.settings_files import load_dotenv
from integration_sync.ops.commands import add_operator_commands


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


@dataclass(frozen=True)
class Addresses:
    """Where `up` serves: the command line's options, else the environment (after the project's `.env`)."""

    host: str
    port: int
    sandbox_port: int
    webhook_port: int


def resolve_addresses(args: argparse.Namespace, environ: Mapping[str, str]) -> Addresses:
    """Options given on the command line win; the others come from `environ`, read after the project
    dir's `.env` is loaded (the parser's defaults are read before `--project-dir` is known)."""

    def port(value: int | None, name: str, default: int) -> int:
        return value if value is not None else _env_port(name, default, environ)

    return Addresses(
        host=args.host or environ.get("INTEGRATION_SYNC_HOST", "").strip() or "127.0.0.1",
        port=port(args.port, "DAGSTER_PORT", 3000),
        sandbox_port=port(args.sandbox_port, "SANDBOX_PORT", 8787),
        webhook_port=port(args.webhook_port, "WEBHOOK_PORT", 8001),
    )


def sandbox_overrides(configured: Mapping[str, str], sandbox: Mapping[str, str]) -> list[str]:
    """Names (never values) of the variables the configuration sets that the sandbox replaces."""
    return sorted(name for name, value in sandbox.items() if configured.get(name) and configured[name] != value)


def prepare_sandbox_home(root: Path, project_home: Path) -> tuple[Path, Path]:
    """The sandbox's own data dir and Dagster instance (`data/sandbox/`, `data/sandbox/dagster_home`),
    emptied: its accounts are new at every start, and its runs and partitions must not show in the real
    instance (nor the real ones in it). The instance's settings are a copy of the project's shipped
    `dagster_home/dagster.yaml` (SQLite), never a DAGSTER_HOME's that may point at a shared database."""
    data = root / "data" / "sandbox"
    shutil.rmtree(data, ignore_errors=True)
    home = data / "dagster_home"
    home.mkdir(parents=True)
    settings = project_home / "dagster.yaml"
    if settings.exists():
        shutil.copy(settings, home / "dagster.yaml")
    return data, home


def cmd_up(args: argparse.Namespace) -> int:
    """Start the sandbox (when no credentials are configured), the Dagster webserver and daemon."""
    root = Path(args.project_dir).resolve()
    load_dotenv(root / ".env")
    at = resolve_addresses(args, os.environ)
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(root / "dagster_home"))
    env.setdefault("INTEGRATION_SYNC_DATA_DIR", str(root / "data"))
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
            from integration_sync.sandbox.env import SANDBOX_DAYS, sandbox_env

            data, home = prepare_sandbox_home(root, root / "dagster_home")
            base = f"http://{at.host}:{at.sandbox_port}"
            receiver = f"http://{at.host}:{at.webhook_port}"
            replaced = {
                **sandbox_env(base, receiver, SANDBOX_DAYS),
                "DAGSTER_HOME": str(home),
                "INTEGRATION_SYNC_DATA_DIR": str(data),
                "WAREHOUSE_PATH": "",
            }
            if env.get("PLATFORM_WEBHOOK_SECRET"):  # .env's secret wins over the platform emulator's published one
                del replaced["PLATFORM_WEBHOOK_SECRET"]
            overridden = sandbox_overrides(os.environ, replaced)
            env.update(replaced)
            env.pop("WAREHOUSE_PATH", None)
            serve = ["sandbox", "serve", "--host", at.host, "--port", str(at.sandbox_port), "--days", str(SANDBOX_DAYS)]
            proc = start([_bin("integration-sync"), *serve])
            _wait_http(f"{base}/_sandbox/stats", 60, proc)
            print(f"sandbox: no credentials in .env, every connector points at {base}", flush=True)
            if overridden:
                names = ", ".join(overridden)
                print(f"sandbox: its own values replace these set in .env or the environment: {names}", flush=True)
        Path(env["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
        _init_instance(env["DAGSTER_HOME"])
        if any(env.get(name) for name in receiver_vars()):
            hook = start(
                [_bin("integration-sync"), "webhooks", "serve", "--host", at.host, "--port", str(at.webhook_port)]
            )
            _wait_http(f"http://{at.host}:{at.webhook_port}/webhook/health", 60, hook)
            print(f"webhook receiver: http://{at.host}:{at.webhook_port}/webhook/", flush=True)
        else:
            print(f"webhook receiver not started: none of {', '.join(receiver_vars())} is set", flush=True)
        _on_start(env)
        _print_doctor(env)
        workspace = str(root / "workspace.yaml")
        web = start([_bin("dagster-webserver"), "-w", workspace, "-h", at.host, "-p", str(at.port)])
        start([_bin("dagster-daemon"), "run", "-w", workspace])
        _wait_http(f"http://{at.host}:{at.port}/server_info", 180, web)
        print(f"Dagster UI: http://{at.host}:{at.port}  (Ctrl-C stops everything)", flush=True)
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


def _on_start(env: dict[str, str]) -> None:
    """Each flow's start-up step (`FlowPlugin.on_start`), once the sandbox and the receiver answer; a
    failing one is a line: `up` goes on."""
    for flow in plugins():
        if flow.on_start is None:
            continue
        try:
            lines = flow.on_start(env)
        except Exception as exc:
            lines = [f"{flow.name}: its start-up step failed ({type(exc).__name__})"]
        for line in lines:
            print(line, flush=True)


def _print_doctor(env: dict[str, str]) -> None:
    """Before Dagster starts: each flow's state, so a wrong setting is named before it costs a run
    (a flow that is not configured skips its schedules and sensors with that reason)."""
    from integration_sync import doctor

    try:
        code, text = doctor.run(env)
    except Exception as exc:  # the summary must never stop the stack from starting
        print(f"doctor: could not check the flows ({type(exc).__name__})", flush=True)
        return
    print("doctor (integration-sync doctor for details):", flush=True)
    print("\n".join(f"  {line}" for line in text.splitlines()), flush=True)
    if code:
        print("  some flows have problems: their runs would fail until they are fixed", flush=True)


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
    from integration_sync.sandbox.env import SANDBOX_DAYS, sandbox_env

    receiver = f"http://{args.webhook_host}:{args.webhook_port}"
    for key, value in sandbox_env(f"http://{args.host}:{args.port}", receiver, SANDBOX_DAYS).items():
        print(f"export {key}={_quote(value)}")
    return 0


def _quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _env_port(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A port from the environment, named when it is not one (a bad .env value, not a traceback)."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise SystemExit(f"integration-sync: error: {name} must be a port number (1-65535), got {raw[:40]!r}")
    return int(raw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="integration-sync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the sandbox if needed, the Dagster webserver and daemon")
    # No defaults here: `resolve_addresses` reads them once the project dir's .env is loaded.
    up.add_argument("--host", help="default: INTEGRATION_SYNC_HOST or 127.0.0.1")
    up.add_argument("--port", type=int, help="the Dagster UI's; default: DAGSTER_PORT or 3000")
    up.add_argument("--sandbox-port", type=int, help="default: SANDBOX_PORT or 8787")
    up.add_argument("--webhook-port", type=int, help="default: WEBHOOK_PORT or 8001")
    up.add_argument("--sandbox", action="store_true", help="use the sandbox even if credentials are set")
    up.add_argument("--project-dir", default=".")
    up.set_defaults(func=cmd_up)

    doctor = sub.add_parser("doctor", help="each flow's configuration: configured, not configured, or what is missing")
    doctor.add_argument("--flow", action="append", help="only this flow (repeatable)")
    doctor.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    doctor.add_argument("--project-dir", default=".", help="where .env is read from")
    doctor.set_defaults(func=cmd_doctor)
    named = add_operator_commands(sub)  # inspect, amocrm authorize, trace, redrive

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
    groups = CommandGroups(root=sub, sandbox=sandbox_sub, named=named)
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
