"""Readers for the deployment files: the Dockerfile, YAML manifests, the unit file, the settings."""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiobotocore.session import AioSession
from pydantic import BaseModel

from orchestrator.daemon.settings import CONFIG_ENV, ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = DEPLOY / "docker-compose.yml"
KUBERNETES = DEPLOY / "kubernetes"
IAM_POLICY = DEPLOY / "iam-policy.json"
CLOUDFORMATION = DEPLOY / "cloudformation" / "contact-orchestrator.yaml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "contact-orchestrator.service"
SYSTEMD_TEMPLATE = DEPLOY / "systemd" / "contact-orchestrator@.service"
INIT_SCRIPT = DEPLOY / "compose" / "init_local_aws.py"
EXAMPLE_CONFIG = ROOT / "config.example.toml"

#: What a container's observability server must listen on to be probed from outside the container.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 (the deployed value under test, not a bind)

#: The port the observability server listens on unless configured otherwise.
DEFAULT_OBSERVABILITY_PORT: int = Settings.model_fields["observability"].default.port


# -- settings -----------------------------------------------------------------------------------


def settings_sections() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel), name
        sections[name] = annotation
    return sections


def setting_of_env(name: str) -> tuple[str, str]:
    """The `(section, key)` an `ORCHESTRATOR_<SECTION>__<KEY>` variable sets; fails if none."""
    assert name.startswith(ENV_PREFIX), name
    parts = name.removeprefix(ENV_PREFIX).lower().split("__")
    assert len(parts) == 2, f"{name}: not ORCHESTRATOR_<SECTION>__<KEY>"
    section, key = parts
    sections = settings_sections()
    assert section in sections, f"{name}: no settings section [{section}]"
    assert key in sections[section].model_fields, f"{name}: [{section}] has no key {key!r}"
    return section, key


def worker_env() -> dict[str, str]:
    """The compose worker service's environment."""
    env = compose_services()["worker"]["environment"]
    assert isinstance(env, dict), "environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def check_orchestrator_env(env: dict[str, str]) -> dict[str, str]:
    """Every `ORCHESTRATOR_*` variable names a real setting (or the config file); returns them."""
    ours = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    for name in ours:
        if name != CONFIG_ENV:
            setting_of_env(name)
    return ours


def duration_s(value: str | int | float) -> float:
    """`45s`, `1m30s`, `60`, `2min` as seconds (compose and systemd notations)."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001}
    total = 0.0
    matched = ""
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|min|h|m|s)", text):
        total += float(number) * units[unit]
        matched += f"{number}{unit}"
    assert matched == text.replace(" ", ""), f"not a duration: {value!r}"
    return total


# -- YAML ---------------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert all(isinstance(doc, dict) for doc in docs), path
    return docs


def kubernetes_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every object the kustomization lists, by `(kind, name)`."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization()["resources"]:
        for doc in yaml_documents(KUBERNETES / resource):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"duplicate {key}"
            objects[key] = doc
    return objects


def kustomization() -> dict[str, Any]:
    (doc,) = yaml_documents(KUBERNETES / "kustomization.yaml")
    return doc


def one(kind: str) -> dict[str, Any]:
    found = [obj for (k, _), obj in kubernetes_objects().items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def configmap_toml() -> tuple[str, str, dict[str, Any]]:
    """(ConfigMap name, key, parsed TOML) of the worker's configuration file."""
    configmap = one("ConfigMap")
    (key, text) = next(iter(configmap["data"].items()))
    return configmap["metadata"]["name"], key, tomllib.loads(text)


def compose_services() -> dict[str, dict[str, Any]]:
    (doc,) = yaml_documents(COMPOSE)
    services: dict[str, dict[str, Any]] = doc["services"]
    return services


# -- Dockerfile ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped; `stage` counts FROMs."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, " ".join(args.split())))
    assert not pending, "dangling line continuation"
    return instructions


def dockerfile_env(stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in dockerfile_instructions():
        if ins.stage == stage and ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, sep, value = pair.partition("=")
                assert sep, f"use ENV KEY=VALUE, got {pair!r}"
                env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def healthcheck(stage: int) -> tuple[dict[str, str], list[str]]:
    """The final HEALTHCHECK's options and exec-form command."""
    (ins,) = [
        i for i in dockerfile_instructions() if i.stage == stage and i.keyword == "HEALTHCHECK"
    ]
    options_text, sep, command = ins.args.partition(" CMD ")
    assert sep, "HEALTHCHECK needs an exec-form CMD"
    options = dict(opt.removeprefix("--").split("=", 1) for opt in options_text.split())
    return options, exec_form(command)


def dockerignore_excludes(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_patterns() -> list[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# -- systemd ------------------------------------------------------------------------------------


def systemd_unit(path: Path = SYSTEMD_UNIT) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def systemd_directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Every directive of a unit file, by section, with repeated directives kept in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# -- IAM: what a real worker calls, and what a policy allows --------------------------------------

#: API operation -> the IAM action that authorizes it (batch calls use the single-entry action).
IAM_ACTIONS = {
    ("sqs", "ReceiveMessage"): "sqs:ReceiveMessage",
    ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
    ("sqs", "DeleteMessage"): "sqs:DeleteMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibility"): "sqs:ChangeMessageVisibility",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sqs", "SendMessage"): "sqs:SendMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sns", "Publish"): "sns:Publish",
    ("sns", "PublishBatch"): "sns:Publish",
    ("events", "PutEvents"): "events:PutEvents",
    ("connect", "StartWebRTCContact"): "connect:StartWebRTCContact",
    ("connect", "DescribeContact"): "connect:DescribeContact",
    ("connect", "GetContactMetrics"): "connect:GetContactMetrics",
    ("connect", "StartScreenSharing"): "connect:StartScreenSharing",
    ("connect", "StopContact"): "connect:StopContact",
}


@dataclass(frozen=True)
class Call:
    service: str  # the signing name, which is the IAM service prefix for these four services
    operation: str
    params: dict[str, Any]

    @property
    def action(self) -> str:
        key = (self.service, self.operation)
        assert key in IAM_ACTIONS, f"the worker makes a call the policy knows nothing of: {key}"
        return IAM_ACTIONS[key]

    def resources(self, region: str, account: str) -> list[str]:
        """The ARNs AWS authorizes this call against (Service Authorization Reference)."""
        p = self.params
        connect = f"arn:aws:connect:{region}:{account}:instance/{p.get('InstanceId')}"
        match self.service:
            case "sqs":
                return [f"arn:aws:sqs:{region}:{account}:{p['QueueUrl'].rsplit('/', 1)[-1]}"]
            case "sns":
                return [p["TopicArn"]]
            case "events":
                buses = {e["EventBusName"] for e in p["Entries"]}
                return [f"arn:aws:events:{region}:{account}:event-bus/{bus}" for bus in buses]
            case "connect" if self.operation == "StartWebRTCContact":
                return [f"{connect}/contact-flow/{p['ContactFlowId']}"]
            case "connect" if self.operation in {
                "DescribeContact",
                "GetContactMetrics",
                "StopContact",
            }:
                return [f"{connect}/contact/{p['ContactId']}"]
            case "connect" if self.operation == "StartScreenSharing":
                return [f"{connect}/contact/{p['ContactId']}", connect]
        raise AssertionError(f"no resource mapping for {self.service}:{self.operation}")


class Recorder:
    """Records every call a session's clients send, with the parameters they were given."""

    def __init__(self, session: AioSession) -> None:
        self.calls: list[Call] = []
        session.register("before-parameter-build", self._params)
        session.register("before-call", self._call)

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["deploy_test_params"] = json.loads(json.dumps(params, default=str))

    def _call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get("deploy_test_params", {})
        self.calls.append(Call(model.service_model.signing_name, model.name, params))


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def statements_allow(
    statements: list[dict[str, Any]],
    action: str,
    arn: str,
    placeholders: dict[str, str] | None = None,
) -> bool:
    """Whether Allow statements (Action/Resource, `*` wildcards) grant `action` on `arn`."""
    for statement in statements:
        if statement["Effect"] != "Allow" or action not in as_list(statement["Action"]):
            continue
        for resource in as_list(statement["Resource"]):
            pattern = resource
            # Longest first: EVENTS_QUEUE_NAME is part of CONTACT_EVENTS_QUEUE_NAME.
            for placeholder in sorted(placeholders or {}, key=len, reverse=True):
                pattern = pattern.replace(placeholder, (placeholders or {})[placeholder])
            if fnmatch.fnmatchcase(arn, pattern):
                return True
    return False
