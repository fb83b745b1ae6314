"""The simulator's `/metrics`: vLLM's metric names, labels and histogram buckets, in Prometheus text.

Written by hand rather than with prometheus_client so that the simulator stays lean; the names
follow vLLM's V1 engine (`model_name` and `engine` labels; counters exposed with `_total`). With
`legacy_names` the KV-cache gauge uses the pre-0.9 name `vllm:gpu_cache_usage_perc`.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.histogram import Histogram

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
FINISH_REASONS = ("stop", "length", "abort")

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
TPOT_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip


def histogram_lines(histogram: Histogram, name: str, labels: str) -> list[str]:
    out = [
        f'{name}_bucket{{{labels},le="{le}"}} {float(total)}'
        for le, total in histogram.cumulative()
    ]
    out.append(f"{name}_count{{{labels}}} {float(histogram.count)}")
    out.append(f"{name}_sum{{{labels}}} {histogram.sum!r}")
    return out


class Metrics:
    """Counters and histograms of finished requests; gauges are read live at render time."""

    def __init__(self, model_name: str, *, legacy_names: bool = False) -> None:
        self.labels = f'engine="0",model_name="{_escape(model_name)}"'
        self.legacy_names = legacy_names
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.tpot = Histogram(TPOT_BUCKETS)
        self.e2e = Histogram(REQUEST_BUCKETS)
        self.queue = Histogram(REQUEST_BUCKETS)

    def finished(
        self,
        *,
        reason: str,
        prompt: int,
        generated: int,
        queue_s: float,
        ttft_s: float,
        e2e_s: float,
    ) -> None:
        """Record one request that ran to its end (or was aborted after it started)."""
        self.prompt_tokens += prompt
        self.generation_tokens += generated
        self.success[reason] = self.success.get(reason, 0) + 1
        self.queue.observe(queue_s)
        self.ttft.observe(ttft_s)
        self.e2e.observe(e2e_s)
        if generated > 1:
            self.tpot.observe((e2e_s - ttft_s) / (generated - 1))

    def render(self, running: int, waiting: int, kv_usage: float) -> bytes:
        labels = self.labels
        cache = "vllm:gpu_cache_usage_perc" if self.legacy_names else "vllm:kv_cache_usage_perc"
        lines: list[str] = []
        gauge = _family(lines, labels, "gauge")
        counter = _family(lines, labels, "counter")
        gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.", running
        )
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        gauge(cache, "KV-cache usage. 1 means 100 percent usage.", kv_usage)
        counter(
            "vllm:prompt_tokens_total", "Number of prefill tokens processed.", self.prompt_tokens
        )
        counter(
            "vllm:generation_tokens_total",
            "Number of generation tokens processed.",
            self.generation_tokens,
        )
        lines.append("# HELP vllm:request_success_total Count of successfully processed requests.")
        lines.append("# TYPE vllm:request_success_total counter")
        for reason, count in self.success.items():
            lines.append(
                f'vllm:request_success_total{{{labels},finished_reason="{reason}"}} {float(count)}'
            )
        for name, help_text, histogram in (
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                self.ttft,
            ),
            (
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds.",
                self.tpot,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                self.e2e,
            ),
            (
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                self.queue,
            ),
        ):
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} histogram")
            lines.extend(histogram_lines(histogram, name, labels))
        lines.append("")
        return "\n".join(lines).encode()


def _family(lines: list[str], labels: str, kind: str) -> Callable[[str, str, float], None]:
    def add(name: str, help_text: str, value: float) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{{{labels}}} {float(value)!r}")

    return add


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
