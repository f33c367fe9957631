"""The docker-compose stack, checked without Docker.

Nothing here starts a container: the compose file is parsed (PyYAML, with the `.env.example`
values substituted the way Compose interpolates them) and checked against what the code
expects: the services of Airflow's official compose file plus ours, variables documented in
`.env.example`, pinned images, Airflow options that exist (`airflow config list --defaults`),
connections that Airflow itself resolves to MinIO and the `instropitch` database, mounts that
match the paths the library reads, and no real-looking secrets. Airflow runs in subprocesses
with a throw-away AIRFLOW_HOME, both at once (they are the slow part: ~10 s).
"""

from __future__ import annotations

import ast
import contextlib
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import ROOT

from instropitch.data import objectstore

COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
MLFLOW_DOCKERFILE = ROOT / "docker" / "mlflow.Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
RUNTIME_REQUIREMENTS = ROOT / "requirements" / "runtime.txt"
CONNECTIONS_PY = ROOT / "include" / "instropitch" / "pipeline" / "connections.py"

AIRFLOW_SERVICES = frozenset(
    {
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-cli",
    }
)
REQUIRED_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "minio", "minio-init", "mlflow"}
ONE_SHOT_SERVICES = frozenset({"airflow-init", "minio-init", "airflow-cli"})
HEALTH_URL = "http://localhost:8080/api/v2/monitor/health"
DATASET_VARIABLE = "INSTROPITCH_DATASET_DIR"

# Options of providers that the apache/airflow image ships but requirements.txt does not install,
# so the local `airflow config list` lacks them. The Celery provider documents `result_backend`
# in its [celery] section; the other [celery] options the file uses are in the local list.
PROVIDER_ONLY_OPTIONS = {("celery", "result_backend"): "apache-airflow-providers-celery"}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; `$${...}` is an escaped `$`.
VARIABLE_RE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SECRET_NAME_RE = re.compile(r"^(?!.*_FILE$).*(?:PASSWORD|SECRET|_KEY$|_KEY_ID$|TOKEN)", re.IGNORECASE)
REAL_SECRET_RES = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    # 40 characters of base64 with upper case, lower case and digits (paths rarely have all three).
    "AWS secret access key": re.compile(
        r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=]))"
        r"(?=[A-Za-z0-9/+]*?[0-9])(?=[A-Za-z0-9/+]*?[A-Z])(?=[A-Za-z0-9/+]*?[a-z])[A-Za-z0-9/+]{40}"
    ),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
}
# The password of `scheme://user:password@host`: a ${VARIABLE} (its error text may hold spaces) or literal.
URI_PASSWORD_RE = re.compile(r"[a-z0-9+]+://[^:/@\s'\"]*:(\$\{[^}]*\}|[^@\s'\"$]*)@")


# ------------------------------------------------------------------------ helpers


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped, no quoting used)."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{path.name}:{number}: not KEY=VALUE: {line!r}"
        assert key not in values, f"{path.name}:{number}: {key} twice"
        values[key] = value
    return values


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation of one value: the ${...} forms (no nesting), then `$$` -> `$`."""

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        found = env.get(name)
        if operator == ":-":
            return found if found else argument
        if operator == "-":
            return argument if found is None else found
        if operator in (":?", "?") and (found is None or (operator == ":?" and not found)):
            raise AssertionError(f"${{{name}}} is required: {argument}")
        return found or ""

    return VARIABLE_RE.sub(substitute, value).replace("$$", "$")


def strings(node: Any) -> list[str]:
    """Every string value of the parsed file (Compose interpolates values, never keys or comments)."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def render(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: render(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [render(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def used_variables(raw: dict[str, Any]) -> list[re.Match]:
    return [m for value in strings(raw) for m in VARIABLE_RE.finditer(value)]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def volume_mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, source, target) of every volume of a service, short or long syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            mounts.append((volume["type"], str(volume.get("source", "")), volume["target"]))
        else:
            source, target = volume.split(":")[:2]
            kind = "bind" if source.startswith((".", "/", "~", "$")) else "volume"
            mounts.append((kind, source, target))
    return mounts


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)", line):
            pins[re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")] = match.group(2)
    return pins


def dockerfile_froms(path: Path) -> list[str]:
    return re.findall(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)", path.read_text(), flags=re.MULTILINE)


def is_pinned(image: str) -> bool:
    """`name:tag` with a tag that names a version (a digit in it), never `latest`; or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all (the colon belonged to a registry port)
        return False
    return tag.lower() != "latest" and any(c.isdigit() for c in tag)


def module_constants(path: Path) -> dict[str, Any]:
    """Top-level `NAME = <literal>` assignments of a Python file, without importing it."""
    constants = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                constants[node.targets[0].id] = ast.literal_eval(node.value)
    return constants


def command_list(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def option_value(args: list[str], option: str) -> str:
    assert option in args, f"{option} missing from {args}"
    return args[args.index(option) + 1]


# ------------------------------------------------------------------------ fixtures

PROBE_SCRIPT = """
import json, sys
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.providers.postgres.hooks.postgres import PostgresHook

aws_conn_id, postgres_conn_id, password_file = sys.argv[1:4]
aws = S3Hook(aws_conn_id=aws_conn_id).conn_config
pg = PostgresHook.get_connection(postgres_conn_id)
with open(password_file) as stream:
    passwords = SimpleAuthManager._get_passwords(stream)
print("PROBE " + json.dumps({
    "aws": {"endpoint_url": aws.endpoint_url, "region": aws.region_name,
            "key": aws.aws_access_key_id, "secret": aws.aws_secret_access_key},
    "postgres": {"host": pg.host, "port": pg.port, "login": pg.login, "password": pg.password, "schema": pg.schema},
    "users": [[u.username, u.role] for u in SimpleAuthManager.get_users()],
    "passwords": passwords,
}))
"""


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def raw(compose_text: str) -> dict[str, Any]:
    """The compose file as written (variables not substituted)."""
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def rendered(raw: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose` sees it after `cp .env.example .env`."""
    return render(raw, env_example)


@pytest.fixture(scope="module")
def services(rendered: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return rendered["services"]


def _clean_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env["AIRFLOW_HOME"] = home
    return env


@pytest.fixture(scope="module")
def airflow_results(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`airflow config list --defaults` and the connection probe, run side by side once."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="instropitch-compose-") as tmp:
        # The API server's own start-up step writes SimpleAuthManager's password file.
        api_env = environment(services["airflow-apiserver"])
        password_file = Path(tmp, "passwords.json")
        api_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(password_file)
        args = command_list(services["airflow-apiserver"])
        assert args[:2] == ["bash", "-c"] and args[2].endswith("&& exec airflow api-server"), args
        setup = args[2].removesuffix("exec airflow api-server") + "true"
        subprocess.run(
            ["bash", "-c", setup],
            env={**_clean_env(str(Path(tmp, "api"))), **api_env, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            check=True,
            timeout=60,
        )

        config = subprocess.Popen(
            [str(bin_dir / "airflow"), "config", "list", "--defaults"],
            env=_clean_env(str(Path(tmp, "config"))),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        ids = module_constants(CONNECTIONS_PY)
        worker_env = environment(services["airflow-worker"])
        probe_env = _clean_env(str(Path(tmp, "probe")))
        probe_env.update(
            {k: v for k, v in worker_env.items() if k.startswith(("AIRFLOW_CONN_", "AIRFLOW__CORE__SIMPLE"))}
        )
        probe = subprocess.Popen(
            [sys.executable, "-c", PROBE_SCRIPT, ids["AWS_CONN_ID"], ids["POSTGRES_CONN_ID"], str(password_file)],
            env=probe_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            config_out, config_err = config.communicate(timeout=180)
            probe_out, probe_err = probe.communicate(timeout=180)
        finally:
            for process in (config, probe):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert config.returncode == 0, config_err[-3000:]
    assert probe.returncode == 0, probe_err[-3000:]

    # Every option is listed with its environment variable: `# Variable: AIRFLOW__SECTION__KEY`.
    options = {
        (match.group(1).lower(), match.group(2).lower())
        for match in re.finditer(r"^# Variable: AIRFLOW__([A-Z0-9_.]+?)__([A-Z0-9_]+)\s*$", config_out, re.MULTILINE)
    }
    assert len(options) > 300, config_out[:2000]
    (probe_line,) = [line for line in probe_out.splitlines() if line.startswith("PROBE ")]
    return {"options": options, "probe": json.loads(probe_line.removeprefix("PROBE "))}


# ------------------------------------------------------------------------ structure


def test_compose_parses_and_has_every_service(raw: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    assert "x-airflow-common" in raw, "the official file's x-airflow-common anchor"
    assert set(services) >= REQUIRED_SERVICES, sorted(REQUIRED_SERVICES - set(services))
    common = raw["x-airflow-common"]
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"] == common["image"], name
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert environment(service)["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert environment(service)["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert "celery worker" in " ".join(command_list(services["airflow-worker"]))
    for name, command in {
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }.items():
        assert command_list(services[name]) == [command], name
    init_env = environment(services["airflow-init"])
    assert init_env["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "airflow" in " ".join(command_list(services["airflow-init"]))


def test_every_variable_is_in_env_example(raw: dict[str, Any], env_example: dict[str, str]) -> None:
    used = {m.group(1) for m in used_variables(raw)}
    assert used, "no ${VARIABLE} found: the regular expression is wrong"
    assert not used - set(env_example), (
        f"used by docker-compose.yaml, missing from .env.example: {sorted(used - set(env_example))}"
    )
    assert not set(env_example) - used, f"in .env.example, unused: {sorted(set(env_example) - used)}"
    required = {m.group(1) for m in used_variables(raw) if m.group(2) in (":?", "?")}
    assert all(env_example[name] for name in required), "a required variable is empty in .env.example"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service, f"{name}: no image (a built image needs a versioned name too)"
        assert is_pinned(service["image"]), f"{name}: {service['image']} is not pinned to a version"
    for dockerfile in (DOCKERFILE, MLFLOW_DOCKERFILE):
        froms = dockerfile_froms(dockerfile)
        assert froms, dockerfile
        assert all(is_pinned(image) for image in froms), f"{dockerfile.name}: {froms}"


UNSERVED = {
    "minio/": "Docker Hub stopped serving minio/* in 2026-09; MinIO publishes the same tags on quay.io/minio/",
}
"""Image name prefixes (on Docker Hub) that no longer pull, and why."""


def unserved(image: str) -> str | None:
    """Why `image` will not pull on a fresh machine, or None."""
    name = image.removeprefix("docker.io/").removeprefix("library/")
    return next((why for prefix, why in UNSERVED.items() if name.startswith(prefix)), None)


def test_every_image_still_pulls_from_its_registry(services: dict[str, dict[str, Any]]) -> None:
    refused = {name: unserved(s["image"]) for name, s in services.items() if unserved(s["image"])}
    assert refused == {}
    assert unserved("minio/minio:RELEASE.2025-04-22T22-12-26Z") and unserved("docker.io/minio/mc:RELEASE.x")
    assert unserved("quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z") is None


def test_pin_check_refuses_floating_tags() -> None:
    assert not is_pinned("postgres")
    assert not is_pinned("minio/minio:latest")
    assert not is_pinned("localhost:5000/minio")
    assert not is_pinned("redis:bookworm")
    assert is_pinned("postgres:16.6-bookworm")
    assert is_pinned("localhost:5000/minio:RELEASE.2025-04-22T22-12-26Z")


def test_airflow_image_matches_requirements(raw: dict[str, Any]) -> None:
    pins = requirement_pins()
    (base,) = dockerfile_froms(DOCKERFILE)
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", base)
    assert match, f"Dockerfile: FROM {base} is not apache/airflow:X.Y.Z-pythonA.B"
    assert match.group(1) == pins["apache-airflow"], "Dockerfile and requirements.txt pin different Airflows"
    requires = module_requires_python()
    assert match.group(2) in requires, f"python{match.group(2)} vs requires-python {requires}"
    assert raw["x-airflow-common"]["image"].endswith(":" + pins["apache-airflow"])
    # The image installs the runtime lock only, which is universal: built natively on amd64 and arm64.
    assert re.search(r"^RUN pip install .*-r \S*requirements/runtime\.txt$", DOCKERFILE.read_text(), re.MULTILINE)
    assert "--universal" in RUNTIME_REQUIREMENTS.read_text()[:500]
    assert "platform" not in raw["x-airflow-common"]


def module_requires_python() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]


def test_mlflow_image_matches_requirements(services: dict[str, dict[str, Any]]) -> None:
    pins = requirement_pins()
    (base,) = dockerfile_froms(MLFLOW_DOCKERFILE)
    assert base == f"ghcr.io/mlflow/mlflow:v{pins['mlflow']}", base
    runs = "\n".join(line for line in MLFLOW_DOCKERFILE.read_text().splitlines() if line.startswith("RUN "))
    installed = dict(re.findall(r"([A-Za-z0-9_.\-]+)==(\S+)", runs))
    assert installed, "mlflow.Dockerfile installs nothing pinned"
    for package, version in installed.items():
        assert pins[package.lower()] == version, f"{package}=={version} vs requirements.txt {pins[package.lower()]}"
    assert {"psycopg2-binary", "boto3"} <= set(installed)
    mlflow = services["mlflow"]
    assert mlflow["build"]["dockerfile"] == MLFLOW_DOCKERFILE.name
    assert (ROOT / mlflow["build"]["context"]).resolve() == MLFLOW_DOCKERFILE.parent
    assert mlflow["image"].endswith(":" + pins["mlflow"])


# ------------------------------------------------------------------------ Airflow


def test_every_airflow_option_exists(raw: dict[str, Any], airflow_results: dict[str, Any]) -> None:
    options = airflow_results["options"] | set(PROVIDER_ONLY_OPTIONS)
    used = set()
    for service in [raw["x-airflow-common"], *raw["services"].values()]:
        for name in environment(service):
            if match := re.fullmatch(r"AIRFLOW__([A-Za-z0-9_.]+?)__([A-Za-z0-9_]+)", name):
                used.add((match.group(1).lower(), match.group(2).lower()))
    assert len(used) >= 10, used
    unknown = sorted(f"AIRFLOW__{s.upper()}__{k.upper()}" for s, k in used - options)
    assert not unknown, f"not Airflow options (airflow config list --defaults): {unknown}"


def test_connections_are_the_ones_the_library_reads(services: dict[str, dict[str, Any]]) -> None:
    ids = module_constants(CONNECTIONS_PY)
    assert {"AWS_CONN_ID", "POSTGRES_CONN_ID"} <= set(ids)
    names = [f"AIRFLOW_CONN_{ids[key].upper()}" for key in ("AWS_CONN_ID", "POSTGRES_CONN_ID")]
    for service in AIRFLOW_SERVICES:
        env = environment(services[service])
        for name in names:
            assert name in env, f"{service}: {name} missing"
            json.loads(env[name])  # JSON after substitution
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", service
        assert env["INSTROPITCH_MLFLOW_UI_URL"].startswith("http"), service


def test_airflow_resolves_the_connections(
    services: dict[str, dict[str, Any]], env_example: dict[str, str], airflow_results: dict[str, Any]
) -> None:
    """Airflow itself, from the worker's environment variables, as a task sees them."""
    probe = airflow_results["probe"]
    minio_env = environment(services["minio"])
    assert probe["aws"] == {
        "endpoint_url": "http://minio:9000",
        "region": "us-east-1",
        "key": minio_env["MINIO_ROOT_USER"],
        "secret": minio_env["MINIO_ROOT_PASSWORD"],
    }
    assert probe["postgres"] == {
        "host": "postgres",
        "port": 5432,
        "login": "instropitch",
        "password": env_example["INSTROPITCH_DB_PASSWORD"],
        "schema": "instropitch",
    }
    # The role and database docker/postgres-init.sh creates, with the password the server gets.
    init_sql = (ROOT / "docker" / "postgres-init.sh").read_text()
    assert "CREATE ROLE instropitch LOGIN PASSWORD :'instropitch_password'" in init_sql
    assert "CREATE DATABASE instropitch OWNER instropitch" in init_sql
    assert environment(services["postgres"])["INSTROPITCH_DB_PASSWORD"] == probe["postgres"]["password"]


def test_ui_login_comes_from_env(airflow_results: dict[str, Any], env_example: dict[str, str]) -> None:
    probe = airflow_results["probe"]
    user = env_example["_AIRFLOW_WWW_USER_USERNAME"]
    assert probe["users"] == [[user, "admin"]]
    assert probe["passwords"] == {user: env_example["_AIRFLOW_WWW_USER_PASSWORD"]}


def test_mounts_match_the_paths_the_library_reads(services: dict[str, dict[str, Any]]) -> None:
    dockerfile_env = dict(re.findall(r"(INSTROPITCH_[A-Z_]+)=(\S+)", DOCKERFILE.read_text()))
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        binds = {target: source for kind, source, target in volume_mounts(services[name]) if kind == "bind"}
        assert binds.get("/opt/airflow/dags") == "./dags", name
        assert binds.get("/opt/airflow/plugins") == "./plugins", name
        include = next(t for t, s in binds.items() if s == "./include")
        models = next(t for t, s in binds.items() if s == "./models")
        assert "INSTROPITCH_SQL_DIR" not in env, name  # the SQL ships inside the package
        assert env["INSTROPITCH_MODELS_DIR"] == models == dockerfile_env["INSTROPITCH_MODELS_DIR"], name
        # The editable install sits where include/ is mounted (the package is found there).
        assert f"-e {Path(include).parent}" in DOCKERFILE.read_text()


def test_mounted_folders_exist(raw: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, service in raw["services"].items():
        for kind, source, _ in volume_mounts(service):
            if kind != "bind" or DATASET_VARIABLE in source:
                continue
            assert source.startswith("./"), f"{name}: {source} (relative to the compose file, please)"
            assert (ROOT / source).exists(), f"{name}: {source} does not exist in the repository"
            checked += 1
    assert checked >= 7
    # The dataset comes from the host, made by `make demo` or the download (not in the repository).
    dataset = [m for m in volume_mounts(services["minio-init"]) if m[2] == "/dataset"]
    assert len(dataset) == 1 and dataset[0][0] == "bind"


def test_shell_scripts_parse() -> None:
    subprocess.run(["sh", "-n", str(ROOT / "docker" / "minio-init.sh")], check=True)
    subprocess.run(["bash", "-n", str(ROOT / "docker" / "postgres-init.sh")], check=True)


# ------------------------------------------------------------------------ data and MLflow


def test_minio_init_uploads_where_the_etl_reads(
    raw: dict[str, Any], services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    init = services["minio-init"]
    env = environment(init)
    assert env["INSTROPITCH_BUCKET"] == objectstore.DEFAULT_BUCKET
    assert env["INSTROPITCH_PREFIX"] == objectstore.DEFAULT_PREFIX
    dags = (ROOT / "dags" / "instropitch_etl.py").read_text()
    assert re.search(rf'"bucket":\s*Param\(\s*"{re.escape(objectstore.DEFAULT_BUCKET)}"', dags)
    assert re.search(rf'"sources":\s*Param\(\s*\[\s*"{re.escape(objectstore.DEFAULT_PREFIX)}"\s*\]', dags)
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    (script,) = [s for kind, s, t in volume_mounts(init) if t.endswith("minio-init.sh")]
    assert init["entrypoint"][-1] == "/docker/minio-init.sh" and script == "./docker/minio-init.sh"
    # The default dataset is the synthetic set `make demo` renders (demo defaults: seed 0, scale 1).
    from instropitch.devstack import demo

    options = demo.DemoOptions(home=Path(".instropitch"))
    expected = "./" + demo.dataset_dir(Path(".instropitch"), options.seed, options.scale).as_posix()
    assert env_example[DATASET_VARIABLE] == expected
    assert f"${{{DATASET_VARIABLE}:-{expected}}}" in strings(raw["services"]["minio-init"]["volumes"])


def test_mlflow_server(services: dict[str, dict[str, Any]]) -> None:
    mlflow = services["mlflow"]
    args = command_list(mlflow)
    assert args[:2] == ["mlflow", "server"]
    assert option_value(args, "--port") == "5000" and option_value(args, "--host") == "0.0.0.0"
    assert "--serve-artifacts" in args
    assert option_value(args, "--artifacts-destination") == "s3://mlflow"
    assert environment(services["minio-init"])["MLFLOW_BUCKET"] == "mlflow"
    backend = option_value(args, "--backend-store-uri")
    assert re.fullmatch(r"postgresql(\+psycopg2)?://mlflow:[^@]+@postgres:5432/mlflow", backend), backend
    assert environment(services["postgres"])["MLFLOW_DB_PASSWORD"] in backend
    env = environment(mlflow)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == environment(services["minio"])["MINIO_ROOT_USER"]
    # MLflow refuses Host headers outside --allowed-hosts (fnmatch, as in mlflow.server.security_utils).
    allowed = option_value(args, "--allowed-hosts").split(",")
    for host in ("mlflow:5000", "localhost:5000", "127.0.0.1:5000"):
        assert any(fnmatch.fnmatch(host, pattern) for pattern in allowed), host
    assert any(p.endswith(":5000") for p in mlflow["ports"]) and "5000:5000" in mlflow["ports"][0]


# ------------------------------------------------------------------------ health and order


def test_apiserver_health_check(services: dict[str, dict[str, Any]]) -> None:
    api = services["airflow-apiserver"]
    assert HEALTH_URL in api["healthcheck"]["test"]
    assert any(str(p).endswith(":8080:8080") for p in api["ports"])
    assert environment(api)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"


def test_health_checks_and_dependencies(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name not in ONE_SHOT_SERVICES:
            assert "healthcheck" in service, f"{name}: long-running service without a health check"
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no health check"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
                assert target in ONE_SHOT_SERVICES and services[target].get("restart", "no") == "no", target
    worker = services["airflow-worker"]["depends_on"]
    assert worker["minio-init"]["condition"] == "service_completed_successfully"
    assert worker["mlflow"]["condition"] == "service_healthy"
    assert worker["airflow-apiserver"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES - {"airflow-init", "airflow-cli"}:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    # Scalable: no fixed container name or host port on the worker.
    assert "container_name" not in services["airflow-worker"] and "ports" not in services["airflow-worker"]


# ------------------------------------------------------------------------ secrets


def test_no_real_secrets(raw: dict[str, Any], env_example: dict[str, str]) -> None:
    files = [COMPOSE, ENV_EXAMPLE, DOCKERFILE, *sorted((ROOT / "docker").iterdir())]
    for path in files:
        text = path.read_text()
        for what, pattern in REAL_SECRET_RES.items():
            assert not pattern.search(text), f"{path.name}: looks like a real {what}"
        for password in URI_PASSWORD_RE.findall(text):
            assert password == "" or VARIABLE_RE.fullmatch(password), f"{path.name}: password in a URI: {password}"
    # Secrets in .env.example are placeholders (or empty), and safe inside URIs and JSON.
    for name, value in env_example.items():
        if SECRET_NAME_RE.search(name):
            assert value == "" or "change-me" in value, f".env.example: {name} is not a placeholder"
            assert re.fullmatch(r"[A-Za-z0-9._-]*", value), f".env.example: {name} is not URI/JSON-safe"
    # The compose file takes every secret from the environment.
    for service_name, service in [("x-airflow-common", raw["x-airflow-common"]), *raw["services"].items()]:
        for name, value in environment(service).items():
            if SECRET_NAME_RE.search(name):
                assert VARIABLE_RE.fullmatch(value), f"{service_name}: {name}={value!r} is not ${{...}}"
            if name.startswith("AIRFLOW_CONN_"):
                conn = json.loads(value)
                assert VARIABLE_RE.fullmatch(conn.get("password", "")), f"{service_name}: {name} password"


def test_readme_documents_the_stack() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Full stack (docker compose)" in readme
    section = readme.split("## Full stack (docker compose)", 1)[1]
    for text in (
        "cp .env.example .env",
        "docker compose up -d",
        "http://localhost:8080",
        "http://localhost:5000",
        "http://localhost:9001",
        "docker compose run --rm airflow-cli dags trigger instropitch_etl",
        "--scale airflow-worker=",
        "AIRFLOW_CONN_AWS_DEFAULT",
        "AIRFLOW_CONN_POSTGRES_DEFAULT",
        DATASET_VARIABLE,
        "instropitch dataset download",
    ):
        assert text in section, f"README's Full stack section does not mention {text!r}"


@pytest.mark.parametrize("layout", ["one folder", "folder of sources", "empty"])
def test_minio_init_script_uploads_each_layout(tmp_path: Path, layout: str) -> None:
    """minio-init.sh run with a stand-in `mc` that logs its commands (MinIO's client cannot run here)."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    if layout == "one folder":
        (dataset / "TinySOL_metadata.csv").write_text("x")
    elif layout == "folder of sources":
        for name in ("merlin", "timgm6mb"):
            (dataset / name).mkdir()
            (dataset / name / "TinySOL_metadata.csv").write_text("x")
        (dataset / "notes").mkdir()  # no CSV: not a source
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    calls.write_text("")
    (bin_dir / "mc").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "mc").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "MINIO_ROOT_USER": "u",
        "MINIO_ROOT_PASSWORD": "p",
        "INSTROPITCH_BUCKET": "instropitch",
        "INSTROPITCH_PREFIX": "TinySOL/",
        "MLFLOW_BUCKET": "mlflow",
        "MINIO_INIT_DATASET": str(dataset),
    }
    done = subprocess.run(
        ["sh", str(ROOT / "docker" / "minio-init.sh")], env=env, capture_output=True, text=True, check=False
    )
    mirrors = [line.split()[-2:] for line in calls.read_text().splitlines() if line.startswith("mirror")]
    if layout == "empty":
        assert done.returncode == 1 and "no TinySOL_metadata.csv" in done.stderr and mirrors == []
    elif layout == "one folder":
        assert done.returncode == 0 and mirrors == [[str(dataset), "local/instropitch/TinySOL/"]]
    else:
        assert done.returncode == 0, done.stderr
        assert mirrors == [
            [f"{dataset}/merlin/", "local/instropitch/merlin/"],
            [f"{dataset}/timgm6mb/", "local/instropitch/timgm6mb/"],
        ]
        assert '{"sources": ["merlin/", "timgm6mb/"]}' in done.stdout
