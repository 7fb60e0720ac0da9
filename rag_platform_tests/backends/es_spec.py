"""Validates Elasticsearch requests against the official Elasticsearch API specification.

The specification (github.com/elastic/elasticsearch-specification, Apache-2.0) is published in machine-readable
form as ``schema.json``; the npm package ``@elastic/request-converter`` ships the 9.x build of it as
``dist/schema.json``. It is never vendored: ``make es-spec`` (part of ``make pytest``) or, failing that, the first
test that needs it installs the package with ``npm pack`` into the git-ignored ``.es-spec/`` folder. The model is
the specification's own metamodel (``metamodel.d.ts`` in that package): endpoints with URL templates, and types
that are interfaces (with inheritance, generics, behaviors and container variants), type aliases, unions, enums,
arrays, dictionaries, literals and user-defined values.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SPEC_PACKAGE = "@elastic/request-converter@9.5.0"
SPEC_DIR = Path(os.environ.get("RAG_ES_SPEC_DIR", Path(__file__).resolve().parents[2] / ".es-spec"))
SCHEMA_PATH = SPEC_DIR / "schema.json"

TypeKey = tuple[str, str]
Env = dict[TypeKey, tuple[Any, "Env"]]


def install_schema(target: Path = SPEC_DIR) -> Path:
    """``npm pack`` the package carrying the specification and keep its ``schema.json`` under ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["npm", "pack", "--silent", SPEC_PACKAGE], cwd=tmp, capture_output=True, text=True, timeout=300, check=True
        )
        tarball = Path(tmp) / out.stdout.strip().splitlines()[-1]
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/dist/schema.json")
            if member is None:
                raise FileNotFoundError(f"{SPEC_PACKAGE} has no dist/schema.json")
            partial = target / "schema.json.tmp"
            partial.write_bytes(member.read())
    partial.replace(target / "schema.json")
    (target / "SOURCE").write_text(f"{SPEC_PACKAGE} dist/schema.json (Apache-2.0), installed by npm pack\n")
    return target / "schema.json"


@cache
def load_spec() -> Spec | None:
    """The specification, installed on first use when npm can reach its registry; None when it cannot be had."""
    if not SCHEMA_PATH.exists():
        if shutil.which("npm") is None:
            return None
        try:
            install_schema()
        except (OSError, subprocess.SubprocessError):
            return None
    return Spec(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Endpoint:
    name: str
    request: TypeKey | None
    urls: list[tuple[str, list[str]]]
    privileges: dict[str, list[str]]


class Spec:
    def __init__(self, model: dict[str, Any]):
        self.types: dict[TypeKey, dict[str, Any]] = {
            (t["name"]["namespace"], t["name"]["name"]): t for t in model["types"]
        }
        self.endpoints = [
            Endpoint(
                e["name"],
                (e["request"]["namespace"], e["request"]["name"]) if e.get("request") else None,
                [(u["path"], list(u["methods"])) for u in e["urls"]],
                dict(e.get("privileges") or {}),
            )
            for e in model["endpoints"]
        ]

    # ---- endpoints -------------------------------------------------------------------------------------

    def endpoint(self, method: str, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """The endpoint serving (method, path) and its path parameters; literal segments beat placeholders."""
        segments = [s for s in path.split("/") if s] if path != "/" else []
        best: tuple[int, Endpoint, dict[str, str]] | None = None
        for endpoint in self.endpoints:
            for template, methods in endpoint.urls:
                if method not in methods and not (method == "HEAD" and "HEAD" in methods):
                    continue
                parts = [s for s in template.split("/") if s]
                if len(parts) != len(segments):
                    continue
                params: dict[str, str] = {}
                literal = 0
                for part, segment in zip(parts, segments, strict=True):
                    if part.startswith("{"):
                        if segment.startswith("_") and not segment.startswith("_all"):
                            break  # an API name, never an index or id
                        params[part.strip("{}")] = segment
                    elif part == segment:
                        literal += 1
                    else:
                        break
                else:
                    if best is None or literal > best[0]:
                        best = (literal, endpoint, params)
        return None if best is None else (best[1], best[2])

    def check_query(self, endpoint: Endpoint, query: dict[str, list[str]]) -> list[str]:
        """Query parameters the request type does not define; the server answers 400 to them."""
        if endpoint.request is None:
            return []
        request = self.types[endpoint.request]
        known = {p["name"] for p in request.get("query", [])}
        for behavior in request.get("attachedBehaviors", []):
            known |= {p["name"] for p in self.types.get(("_spec_utils", behavior), {}).get("properties", [])}
        path = request.get("path", [])
        known |= {p["name"] for p in path}
        return [
            f"request [{endpoint.name}] contains unrecognized parameter: [{name}]"
            for name in query
            if name not in known
        ]

    def check_body(self, endpoint: Endpoint, body: Any, *, version: tuple[int, int] | None = None) -> list[str]:
        """Errors in a JSON body against the request type's body definition."""
        if endpoint.request is None:
            return []
        spec_body = self.types[endpoint.request]["body"]
        if spec_body["kind"] == "no_body":
            return [] if body is None else [f"request [{endpoint.name}] does not support having a body"]
        if body is None:
            return []
        checker = _Checker(self, version)
        if spec_body["kind"] == "properties":
            return checker.properties(body, spec_body["properties"], {}, "", extra=None)
        return checker.value(body, spec_body["value"], {}, "")

    def check_value(self, value: Any, type_key: TypeKey, where: str = "") -> list[str]:
        return _Checker(self, None).value(value, {"kind": "instance_of", "type": _name(type_key)}, {}, where)


def _name(key: TypeKey) -> dict[str, str]:
    return {"namespace": key[0], "name": key[1]}


def _key(type_name: dict[str, str]) -> TypeKey:
    return (type_name["namespace"], type_name["name"])


def _since(prop: dict[str, Any]) -> tuple[int, int] | None:
    since = (prop.get("availability") or {}).get("stack", {}).get("since")
    if not since:
        return None
    match = re.match(r"(\d+)\.(\d+)", since)
    return (int(match.group(1)), int(match.group(2))) if match else None


class _Checker:
    def __init__(self, spec: Spec, version: tuple[int, int] | None):
        self.spec = spec
        self.version = version

    def value(self, value: Any, value_of: dict[str, Any], env: Env, where: str) -> list[str]:
        kind = value_of["kind"]
        at = where or "<body>"
        if kind == "user_defined_value":
            return []
        if kind == "literal_value":
            return [] if value == value_of["value"] else [f"[{at}] must be {value_of['value']!r}, got {value!r}"]
        if kind == "array_of":
            if not isinstance(value, list):
                return [f"[{at}] expected an array, got {type(value).__name__}"]
            return [e for i, item in enumerate(value) for e in self.value(item, value_of["value"], env, f"{at}[{i}]")]
        if kind == "dictionary_of":
            if not isinstance(value, dict):
                return [f"[{at}] expected an object, got {type(value).__name__}"]
            if value_of.get("singleKey") and len(value) != 1:
                return [f"[{at}] expected exactly one key, got {sorted(value)}"]
            return [e for k, v in value.items() for e in self.value(v, value_of["value"], env, f"{where}.{k}")]
        if kind == "union_of":
            failures = []
            for item in value_of["items"]:
                errors = self.value(value, item, env, where)
                if not errors:
                    return []
                failures.append(errors)
            # Report the alternative of the value's own JSON type, not "expected an array" for an object.
            same_shape = [f for f in failures if not f[0].startswith(f"[{at}] expected")]
            return min(same_shape or failures, key=len) if failures else []
        if kind == "instance_of":
            return self.instance(value, value_of, env, where)
        raise ValueError(f"unknown specification kind {kind}")

    def instance(self, value: Any, value_of: dict[str, Any], env: Env, where: str) -> list[str]:
        key = _key(value_of["type"])
        at = where or "<body>"
        if key in env:  # a generic parameter
            bound, bound_env = env[key]
            return self.value(value, bound, bound_env, where)
        if key[0] == "_builtins":
            ok = {
                "string": isinstance(value, str),
                "boolean": isinstance(value, bool),
                "number": isinstance(value, int | float) and not isinstance(value, bool),
                "null": value is None,
            }.get(key[1], True)
            return [] if ok else [f"[{at}] expected {key[1]}, got {json.dumps(value)[:60]}"]
        definition = self.spec.types.get(key)
        if definition is None:
            return []
        generics = value_of.get("generics") or []
        bound: Env = {_key(g): (v, env) for g, v in zip(definition.get("generics") or [], generics, strict=False)}
        if definition["kind"] == "enum":
            names = {m["name"] for m in definition["members"]} | {
                a for m in definition["members"] for a in m.get("aliases", [])
            }
            text = str(value).lower() if isinstance(value, bool) else value
            if definition.get("isOpen") or (isinstance(text, str) and text in names):
                return []
            return [f"[{at}] {value!r} is not one of {sorted(names)}"]
        if definition["kind"] == "type_alias":
            variants = definition.get("variants") or {}
            if variants.get("kind") == "internal_tag" and isinstance(value, dict):
                return self.tagged(value, definition, variants, bound, where)
            return self.value(value, definition["type"], bound, where)
        if definition["kind"] == "interface":
            return self.interface(value, definition, bound, where)
        return []

    def tagged(
        self, value: dict[str, Any], alias: dict[str, Any], variants: dict[str, Any], env: Env, where: str
    ) -> list[str]:
        tag = variants["tag"]
        wanted = value.get(tag, variants.get("defaultTag"))
        for item in alias["type"]["items"]:
            definition = self.spec.types.get(_key(item["type"]), {})
            for prop in self.all_properties(definition, env)[0]:
                if (
                    prop["name"] == tag
                    and prop["type"].get("kind") == "literal_value"
                    and prop["type"]["value"] == wanted
                ):
                    return self.value(value, item, env, where)
        return [f"[{where or '<body>'}] unknown {tag} [{wanted}]"]

    def all_properties(
        self, definition: dict[str, Any], env: Env
    ) -> tuple[list[dict[str, Any]], list[tuple[Any, Env]]]:
        """Own and inherited properties, and the value types of AdditionalProperty/-ies behaviors."""
        props: list[dict[str, Any]] = []
        extras: list[tuple[Any, Env]] = []
        current: dict[str, Any] | None = definition
        current_env = env
        while current is not None:
            props.extend(dict(p, _env=current_env) for p in current.get("properties", []))
            for behavior in current.get("behaviors", []) or []:
                if behavior["type"]["name"] in {"AdditionalProperties", "AdditionalProperty"}:
                    extras.append((behavior["generics"][1], current_env))
            parent = current.get("inherits")
            if not parent:
                break
            parent_def = self.spec.types.get(_key(parent["type"]))
            if parent_def is None:
                break
            current_env = {
                _key(g): (v, current_env)
                for g, v in zip(parent_def.get("generics") or [], parent.get("generics") or [], strict=False)
            }
            current = parent_def
        return props, extras

    def interface(self, value: Any, definition: dict[str, Any], env: Env, where: str) -> list[str]:
        props, extras = self.all_properties(definition, env)
        shortcut = definition.get("shortcutProperty")
        if not isinstance(value, dict):
            if shortcut:
                prop = next(p for p in props if p["name"] == shortcut)
                return self.value(value, prop["type"], prop["_env"], where)
            return [f"[{where or '<body>'}] expected an object, got {type(value).__name__}"]
        errors = self.properties(value, props, env, where, extra=extras[0] if extras else None)
        if (definition.get("variants") or {}).get("kind") == "container":
            variants = [p["name"] for p in props if not p.get("containerProperty") and p["name"] in value]
            if len(variants) != 1:
                errors.append(f"[{where or '<body>'}] expected exactly one of its variants, got {variants}")
        return errors

    def properties(
        self, value: Any, props: list[dict[str, Any]], env: Env, where: str, *, extra: tuple[Any, Env] | None
    ) -> list[str]:
        if not isinstance(value, dict):
            return [f"[{where or '<body>'}] expected an object, got {type(value).__name__}"]
        by_name: dict[str, dict[str, Any]] = {}
        for prop in props:
            by_name.setdefault(prop["name"], prop)
            for alias in prop.get("aliases", []) or []:
                by_name.setdefault(alias, prop)
        errors = []
        for name, item in value.items():
            at = f"{where}.{name}" if where else name
            prop = by_name.get(name)
            if prop is None:
                if extra is not None:
                    errors.extend(self.value(item, extra[0], extra[1], at))
                else:
                    errors.append(f"[{where or '<body>'}] unknown field [{name}]")
                continue
            since = _since(prop)
            if self.version is not None and since is not None and since > self.version:
                errors.append(f"[{where or '<body>'}] unknown field [{name}] (added in {since[0]}.{since[1]})")
                continue
            errors.extend(self.value(item, prop["type"], prop.get("_env", env), at))
        for prop in props:
            if (
                prop.get("required")
                and prop["name"] not in value
                and not (prop.get("aliases") and set(prop["aliases"]) & set(value))
            ):
                errors.append(f"[{where or '<body>'}] required field [{prop['name']}] is missing")
        return errors


if __name__ == "__main__":  # `make es-spec`
    print(install_schema())
