"""Pipeline specs: models (the Python API), the YAML loader, partition keys and mappings."""

from coordinator.spec.loader import load_spec, parse_spec
from coordinator.spec.models import DatasetSpec, InputSpec, JobSpec, PipelineSpec, RetrySpec

__all__ = ["DatasetSpec", "InputSpec", "JobSpec", "PipelineSpec", "RetrySpec", "load_spec", "parse_spec"]
