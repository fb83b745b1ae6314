"""GPU placement: will the engines fit, on which GPUs, with what memory fractions.

`check_plan(config)` is what `appliance serve` calls before it launches vLLM engines;
`appliance plan` prints the same plan for people.
"""

from appliance.errors import GpuSpecError
from appliance.placement.check import check_plan, plan_profile
from appliance.placement.gpus import Gpu, parse_gpu_spec
from appliance.placement.plan import EnginePlan, GpuUse, Plan, Suggestion
from appliance.placement.planner import plan_engines

__all__ = [
    "EnginePlan",
    "Gpu",
    "GpuSpecError",
    "GpuUse",
    "Plan",
    "Suggestion",
    "check_plan",
    "parse_gpu_spec",
    "plan_engines",
    "plan_profile",
]
