#!/usr/bin/env python3
"""Run compose.yaml without a Docker engine: each service's own command, natively, with exactly the
environment the file gives it, in a network namespace of its own where every service name (and the
deployment's domain) resolves to this namespace's address.

    unshare --net --mount --propagation private -- \\
        python scripts/compose_native.py up --env-file .env --state DIR [-- CHECK_COMMAND ...]

``up`` starts the services of the active profiles (COMPOSE_PROFILES in the env file) in
``depends_on`` order, waits for each one's health check (run natively inside that service's mounts)
where a dependent asks for ``service_healthy``, runs CHECK_COMMAND (exit status passed on), then
stops everything. What stands in for Docker:

* network: one namespace (``unshare --net``): loopback and a veth pair with one address (ICE skips loopback); /etc/hosts (bound
  over the file inside the namespace) maps every service name and DH_DOMAIN to that address;
  the ports are the ones the file declares, so they must not collide between services.
* volumes: a named volume is ``DIR/volumes/NAME``, a bind mount is the path in this checkout; each
  service gets its mounts at the container paths, in a mount namespace of its own.
* images: ``build: .`` services run in this checkout with ``.venv`` (``python`` is its Python), with
  the Dockerfile's ENV and its models folder (``/models``, the set-up step's models). The four
  images are stood in for by the same programs installed here: livekit-server (the image's
  entrypoint, given the file's ``command``), caddy and redis-server (the file's ``command``), and
  PostgreSQL (the image's entrypoint: initdb with POSTGRES_USER/PASSWORD, create POSTGRES_DB).

A container path that does not exist here (``/data``, ``/models``...) is created, empty, as the
mount point: mount namespaces keep the mounts private, not the directories under them.

Logs: ``DIR/logs/SERVICE.log``. Not covered: restart policies, resource reservations (GPU), image
contents themselves (the Dockerfile is not built).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ADDRESS = "10.213.0.1"  # this namespace's address: every service name resolves to it
VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
IMAGE_ENV = {  # the ENV lines of the stood-in images that their programs read
    "caddy": {"XDG_CONFIG_HOME": "/config", "XDG_DATA_HOME": "/data"},
}


class ComposeError(RuntimeError):
    """The file cannot be run as written (a missing variable, an unknown image, a port clash...)."""


# ----------------------------------------------------------------------------- reading the file
def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip("'\"")
    return env


def interpolate(value, env: dict[str, str]):  # noqa: ANN001, ANN201
    """Compose's variable substitution over every string of the document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        have = env.get(name)
        unset = have is None or (have == "" and op and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset else have
        if op in (":?", "?"):
            if unset:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return have
        return have or ""

    return VAR.sub(sub, value)


def load(compose: Path, env: dict[str, str]) -> dict:
    return interpolate(yaml.safe_load(compose.read_text()), env)


def dockerfile_env(dockerfile: Path) -> dict[str, str]:
    """The ENV lines of the Dockerfile (``ENV A=1 B=2``)."""
    env: dict[str, str] = {}
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                k, _, v = pair.partition("=")
                env[k] = v
    return env


def active(doc: dict, profiles: set[str]) -> list[str]:
    """The services that run with these profiles, dependencies first."""
    services = doc["services"]
    chosen = [n for n, s in services.items() if not s.get("profiles") or profiles & set(s["profiles"])]
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in trail:
            raise ComposeError(f"depends_on cycle: {' -> '.join((*trail, name))}")
        if name not in services:
            raise ComposeError(f"{trail[-1]} depends on {name}, which is not a service")
        for dep in depends(services[name]):
            visit(dep, (*trail, name))
        order.append(name)

    for n in chosen:
        visit(n, ())
    return order


def depends(service: dict) -> dict[str, str]:
    d = service.get("depends_on") or {}
    if isinstance(d, list):
        return {n: "service_started" for n in d}
    return {n: (c or {}).get("condition", "service_started") for n, c in d.items()}


def environment(service: dict) -> dict[str, str]:
    e = service.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) for x in e)
    return {k: "" if v is None else str(v) for k, v in e.items()}


def published_ports(service: dict) -> list[str]:
    return [str(p).split(":")[-1] for p in service.get("ports") or []]


# ----------------------------------------------------------------------------- one service natively
def livekit_binary() -> str:
    sys.path.insert(0, str(REPO))
    from harness.devstack import livekit_binary as lb

    return str(lb())


def pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else (shutil.which(name) or name)


def plan(name: str, service: dict, state: Path) -> dict:
    """How to run one service here: its argv, environment and mounts."""
    env = {"PATH": os.environ["PATH"], "HOME": str(state / "home" / name), "LANG": "C.UTF-8"}
    mounts: list[tuple[str, str]] = []
    for v in service.get("volumes") or []:
        src, dst, *_ = str(v).split(":")
        host = (REPO / src).resolve() if src.startswith((".", "/")) else state / "volumes" / src
        if not src.startswith((".", "/")):
            host.mkdir(parents=True, exist_ok=True)
        mounts.append((str(host), dst))
    command = service.get("command") or []
    if isinstance(command, str):
        command = command.split()
    kind = "exec"
    if "build" in service:
        env.update(dockerfile_env(REPO / "Dockerfile"))
        if env.get("DH_MODELS_DIR"):  # the image's models, made by the same set-up step
            mounts.append((os.environ.get("DH_MODELS_DIR") or str(Path(os.environ.get("DH_CACHE") or Path.home() / ".cache" / "dh-agent") / "models"), env["DH_MODELS_DIR"]))
        python = str(REPO / ".venv" / "bin" / "python")
        argv = [python if a == "python" else a for a in command]
    else:
        image = service["image"].split(":")[0].rsplit("/", 1)[-1]
        env.update(IMAGE_ENV.get(image, {}))
        if image == "livekit-server":
            argv = [livekit_binary(), *command]
        elif image in ("caddy", "redis"):
            argv = list(command)
        elif image == "postgres":
            kind, argv = "postgres", []
        else:
            raise ComposeError(f"{name}: no native stand-in for the image {service['image']}")
    env.update(environment(service))
    (state / "home" / name).mkdir(parents=True, exist_ok=True)
    return {"name": name, "kind": kind, "argv": argv, "env": env, "mounts": mounts,
            "cwd": str(REPO) if "build" in service else str(state / "home" / name)}


def exec_service(spec: dict) -> None:
    """Inside the service's own mount namespace: bind its mounts, then become its program."""
    for host, dst in spec["mounts"]:
        p = Path(dst)
        if Path(host).is_dir():
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch(exist_ok=True)
        subprocess.run(["mount", "--bind", host, dst], check=True)
    env = spec["env"]
    os.chdir(spec["cwd"])
    if spec["kind"] == "postgres":  # what the image's entrypoint does
        data = "/var/lib/postgresql/data"
        shutil.chown(data, "postgres", "postgres")
        os.chmod(data, 0o700)
        os.chdir("/")  # the postgres user may not enter the state folder
        if not Path(data, "PG_VERSION").exists():
            fd, name = tempfile.mkstemp(prefix="pgpw-")
            pw = Path(name)
            os.write(fd, env["POSTGRES_PASSWORD"].encode())
            os.close(fd)
            shutil.chown(pw, "postgres")
            subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("initdb"), "-D", data, "-U", env["POSTGRES_USER"],
                            f"--pwfile={pw}", "--auth-host=scram-sha-256", "--auth-local=trust", "--no-locale",
                            "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
            pw.unlink()
            subprocess.run(["runuser", "-u", "postgres", "--", pg_bin("postgres"), "--single", "-D", data, "postgres"],
                           input=f"CREATE DATABASE \"{env['POSTGRES_DB']}\";\n", text=True, check=True,
                           stdout=subprocess.DEVNULL)
            with open(Path(data, "pg_hba.conf"), "a") as f:
                f.write("host all all all scram-sha-256\n")
        argv = ["runuser", "-u", "postgres", "--", pg_bin("postgres"), "-D", data, "-c", "listen_addresses=*",
                "-k", "/tmp", "-p", "5432"]
    else:
        argv = spec["argv"]
    os.execvpe(argv[0], argv, env)


# ----------------------------------------------------------------------------- the deployment
class Deployment:
    def __init__(self, doc: dict, env_file: dict[str, str], state: Path) -> None:
        self.doc, self.vars, self.state = doc, env_file, state
        self.procs: dict[str, subprocess.Popen] = {}
        self.specs: dict[str, dict] = {}
        (state / "logs").mkdir(parents=True, exist_ok=True)

    def network(self) -> None:
        """Loopback and the namespace's own address; every service name resolves to it."""
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        # a veth pair (both ends here): WebRTC's ICE leaves loopback interfaces out of its candidates
        subprocess.run(["ip", "link", "add", "dh0", "type", "veth", "peer", "name", "dh1"], check=True)
        subprocess.run(["ip", "addr", "add", f"{ADDRESS}/24", "dev", "dh0"], check=True)
        for dev in ("dh0", "dh1"):
            subprocess.run(["ip", "link", "set", dev, "up"], check=True)
        names = [*self.doc["services"], self.vars.get("DH_DOMAIN", "")]
        hosts = self.state / "hosts"
        hosts.write_text(f"127.0.0.1 localhost\n::1 localhost\n{ADDRESS} {' '.join(n for n in names if n)}\n")
        subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)

    def start(self, name: str) -> None:
        service = self.doc["services"][name]
        spec = self.specs[name] = plan(name, service, self.state)
        log = open(self.state / "logs" / f"{name}.log", "w")  # noqa: SIM115 - the child's for its lifetime
        self.procs[name] = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", sys.executable, __file__, "_exec", json.dumps(spec)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        print(f"[compose-native] started {name} ({Path(spec['argv'][0]).name if spec['argv'] else spec['kind']})", flush=True)

    def healthy(self, name: str) -> float:
        """Run the service's own health check until it passes (inside its mounts); seconds waited."""
        check = self.doc["services"][name].get("healthcheck")
        if not check or check.get("disable"):
            raise ComposeError(f"a service waits for {name} to be healthy, but {name} has no health check")
        test = check["test"]
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        spec = self.specs[name]
        argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
        if "build" in self.doc["services"][name]:
            argv = [str(REPO / ".venv" / "bin" / "python") if a == "python" else a for a in argv]
        retries = int(check.get("retries", 3))
        budget = duration(check.get("start_period", "0s")) + retries * duration(check.get("interval", "30s"))
        t0 = time.monotonic()
        while True:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise ComposeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            ok = subprocess.run(["nsenter", "-t", str(proc.pid), "-m", "--", *argv], env=spec["env"], cwd=spec["cwd"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
            if ok:
                return time.monotonic() - t0
            if time.monotonic() - t0 > budget:
                raise ComposeError(f"{name} did not become healthy within {budget:.0f} s:\n{self.tail(name)}")
            time.sleep(1.0)

    def tail(self, name: str, n: int = 30) -> str:
        lines = (self.state / "logs" / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def up(self, profiles: set[str]) -> list[str]:
        order = active(self.doc, profiles)
        seen: dict[str, str] = {}
        for name in order:
            for port in published_ports(self.doc["services"][name]):
                if port in seen:
                    raise ComposeError(f"port {port} of {name} is also {seen[port]}'s: they clash on one host")
                seen[port] = name
        waited: set[str] = set()
        for name in order:
            for dep, cond in depends(self.doc["services"][name]).items():
                if cond == "service_healthy" and dep not in waited:
                    print(f"[compose-native] {dep} healthy after {self.healthy(dep):.1f} s", flush=True)
                    waited.add(dep)
            self.start(name)
        for name in order:  # the end state compose reports: every service with a health check healthy
            if self.doc["services"][name].get("healthcheck") and name not in waited:
                print(f"[compose-native] {name} healthy after {self.healthy(name):.1f} s", flush=True)
        return order

    def down(self) -> None:
        for _name, proc in reversed(list(self.procs.items())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name, proc in reversed(list(self.procs.items())):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            print(f"[compose-native] stopped {name} ({proc.returncode})", flush=True)


def duration(text: str | int | float) -> float:
    if isinstance(text, (int, float)):
        return float(text)
    total = 0.0
    for amount, unit in re.findall(r"([\d.]+)(ms|s|m|h)", text):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "_exec":
        exec_service(json.loads(args[1]))
        return 1
    p = argparse.ArgumentParser(prog="compose_native.py", description=__doc__.split("\n\n")[0])
    p.add_argument("cmd", choices=["up", "config"])
    p.add_argument("--file", type=Path, default=REPO / "compose.yaml")
    p.add_argument("--env-file", type=Path, default=REPO / ".env")
    p.add_argument("--state", type=Path, default=REPO / "out" / "compose-native")
    check = args[args.index("--") + 1:] if "--" in args else []  # the COMMAND run once every service is up
    a = p.parse_args(args[:args.index("--")] if "--" in args else args)
    env = read_env_file(a.env_file)
    try:
        doc = load(a.file, env)
    except ComposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.cmd == "config":
        print(yaml.safe_dump(doc, sort_keys=False))
        return 0
    profiles = {x.strip() for x in env.get("COMPOSE_PROFILES", "").split(",") if x.strip()}
    a.state.mkdir(parents=True, exist_ok=True)
    d = Deployment(doc, env, a.state)
    try:
        d.network()
        t0 = time.monotonic()
        order = d.up(profiles)
        print(f"[compose-native] up: {', '.join(order)} in {time.monotonic() - t0:.1f} s", flush=True)
        if not check:
            return 0
        return subprocess.run(check, cwd=REPO).returncode
    except ComposeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    finally:
        d.down()


if __name__ == "__main__":
    sys.exit(main())
