"""Evaluation: PQ (panopticapi), mIoU (confusion matrix), mask AP (pycocotools)."""

from cfnet.evaluation.instance import MaskAPEvaluator
from cfnet.evaluation.panoptic import (
    PQ_KEYS,
    panoptic_quality,
    panoptic_quality_details,
    write_panoptic_predictions,
)
from cfnet.evaluation.semantic import SemanticEvaluator

__all__ = [
    "PQ_KEYS",
    "MaskAPEvaluator",
    "SemanticEvaluator",
    "panoptic_quality",
    "panoptic_quality_details",
    "write_panoptic_predictions",
]
