"""dbt models on DuckDB (stg_documents, current_documents), each a Dagster asset; dbt tests are asset checks."""

import contextlib
import functools
import importlib.metadata
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from packaging import version

from rag_platform import warehouse
from rag_platform.config import Settings
from rag_platform.dbt import build_in_process, dbt_project_dir, dbt_vars, ensure_manifest
from rag_platform.defs.resources import PlatformResource
from rag_platform.gates import Gate
from rag_platform.pipeline import steps


class Translator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "transform"

    def get_description(self, dbt_resource_props: Mapping[str, Any]) -> str:
        return dbt_resource_props.get("description") or f"dbt model {dbt_resource_props['name']}"


def build_dbt_assets(manifest_path: str) -> dg.AssetsDefinition:
    @dbt_assets(
        manifest=manifest_path,
        dagster_dbt_translator=Translator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    )
    def dbt_models(
        context: dg.AssetExecutionContext,
        dbt: DbtCliResource,
        platform: PlatformResource,
    ) -> Iterator[Any]:
        parts = platform.parts
        # One target folder for all runs (they never overlap: the refresh lock) keeps dbt's partial parse.
        target = parts.home / "dbt" / "target"
        parts.start_warmup()  # while this step waits on dbt
        tests: list[Gate] = []
        try:
            for event in _build_events(context, dbt, parts.settings, target):
                if isinstance(event, dg.AssetCheckResult):
                    tests.append(dbt_test_gate(event))
                yield event
        finally:
            # Recorded once dbt has let go of the warehouse file: dbt tests are gates of the run like the others.
            steps.gates_recorded(parts, context.run.run_id, tests)

    return dbt_models


def whole_selection(context: dg.AssetExecutionContext) -> bool:
    """Whether the step materializes every dbt model and runs every dbt test (the refresh and rebuild jobs)."""
    assets_def = context.assets_def  # a run of a selection sees a subsetted definition: compare with all of it
    every_check = {spec.key for spec in assets_def.node_check_specs_by_output_name.values()}
    return set(context.selected_asset_keys) == set(assets_def.specs_by_key) and (
        set(context.selected_asset_check_keys) == every_check
    )


def _build_events(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, settings: Settings, target: Path
) -> Iterator[Any]:
    """The Dagster events of one ``dbt build``: in this process for the whole selection (the jobs' path: no
    interpreter start, dbt import or parse per run), else dagster-dbt's subprocess with its subset selection."""
    if not whole_selection(context):
        # dagster-dbt echoes dbt's log lines on stdout; stdout belongs to `--json` output, so send them to stderr.
        with contextlib.redirect_stdout(sys.stderr), warehouse.released(settings):
            args = ["build", "--vars", dbt_vars(settings.warehouse_path)]
            yield from dbt.cli(args, context=context, target_path=target).stream()
        return
    build = build_in_process(settings.warehouse_path, target)
    manifest, translator, _ = get_manifest_and_translator_from_dbt_assets([context.assets_def])
    for raw in build.events:
        message = DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={})
        yield from message.to_default_asset_events(manifest, translator, context, target)
    if not build.success:
        raise dg.Failure(f"dbt build failed: {build.error}")


def dbt_test_gate(result: dg.AssetCheckResult) -> Gate:
    """A dbt test's outcome as a gate of the run."""
    name = result.check_name or "dbt_test"
    failures = getattr(result.metadata.get("dagster_dbt/failed_row_count"), "value", None)
    detail = f"{failures} failing rows" if failures is not None else "failed"
    return Gate(name, result.passed, f"dbt test {name}: {'passed' if result.passed else detail}")


class InstalledDbtResource(DbtCliResource):
    """The dbt installed beside this interpreter, without two fixed costs dagster-dbt (pinned) pays on every
    invocation: ``dbt --version`` in a subprocess (1.7 s here; the installed dbt-core's metadata gives the same
    answer) and an in-process dbt adapter (2 s), used only to fetch row counts and column metadata, which
    these assets do not request."""

    @functools.cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]  # its caller takes None
        return None


def dbt_resource() -> DbtCliResource:
    project_dir = str(dbt_project_dir())
    # The dbt installed beside this interpreter, even when its bin folder is not on PATH.
    beside = Path(sys.executable).parent / "dbt"
    if beside.is_file():
        return InstalledDbtResource(project_dir=project_dir, profiles_dir=project_dir, dbt_executable=str(beside))
    return DbtCliResource(project_dir=project_dir, profiles_dir=project_dir, dbt_executable="dbt")


def manifest_for(home: str) -> str:
    return str(ensure_manifest(home))
