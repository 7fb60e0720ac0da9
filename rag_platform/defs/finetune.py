"""The ``fine_tuned_model`` asset (the ``finetune_model`` job): thin wiring over ``pipeline.finetune``."""

import logging
from typing import Any

import dagster as dg

from rag_platform import warehouse
from rag_platform.defs.resources import PlatformResource
from rag_platform.pipeline.finetune import fine_tune

logger = logging.getLogger("rag_platform.finetune")


class FinetuneConfig(dg.Config):
    budget_s: int = 0  # 0: finetune.budget_s


def _say(context: dg.AssetExecutionContext) -> Any:
    def say(message: str) -> None:
        logger.info(message)
        context.log.info(message)

    return say


@dg.asset(
    group_name="finetune",
    kinds={"python", "pytorch"},
    deps=[dg.AssetKey("chunk_embeddings")],
    description="The embedding model fine-tuned on the served corpus (title/heading -> passage and neighbouring "
    "passages, hard negatives from the served vectors, evaluation queries left out); versioned by base model, "
    "data version and training settings. Its observations hold base and candidate nDCG@10 and whether it serves.",
    code_version="1",
)
def fine_tuned_model(
    context: dg.AssetExecutionContext, config: FinetuneConfig, platform: PlatformResource
) -> dg.MaterializeResult:
    tuned = fine_tune(platform.parts, context.run_id, config.budget_s or None, log=_say(context))
    warehouse.export_snapshot(platform.parts.settings)
    return dg.MaterializeResult(metadata=tuned.as_dict(), data_version=dg.DataVersion(tuned.version))
