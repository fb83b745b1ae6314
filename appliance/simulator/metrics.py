"""The simulator's `/metrics`: vLLM 0.32's metric families, written by prometheus-client as vLLM's are.

The families, types, label names and buckets are the ones real vLLM exposes (held to a captured
exposition by tests/unit/simulator/test_sim_metrics_golden.py). Like vLLM, the writer is
prometheus-client with its defaults: label names sorted, counters with `_total` and a `_created`
gauge beside every counter and histogram. Only the families a simulated engine can fill are
here; vLLM's multimodal, LoRA, KV-connector and speculative-decoding families are not. With
`legacy_names` the KV-cache gauge uses the pre-0.9 name `vllm:gpu_cache_usage_perc`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"  # what vLLM's /metrics answers
FINISH_REASONS = ("stop", "length", "abort")
LABELS = ("model_name", "engine")

TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
INTER_TOKEN_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
)  # fmt: skip
REQUEST_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
    240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
PARAMS_N_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0)
PREEMPTION_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0)


def token_buckets(max_model_len: int) -> tuple[float, ...]:
    """vLLM's 1-2-5 series up to `max_model_len` (for token-count histograms)."""
    out: list[float] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_model_len:
                return tuple(out)
            out.append(float(value))
        exponent += 1


class Metrics:
    """Counters and histograms of finished requests; gauges are read live at render time."""

    def __init__(
        self, model_name: str, *, max_model_len: int = 8192, legacy_names: bool = False
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.labels = labels = {"model_name": model_name, "engine": "0"}
        cache = "vllm:gpu_cache_usage_perc" if legacy_names else "vllm:kv_cache_usage_perc"

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, LABELS, registry=registry)

        def counter(name: str, text: str) -> Counter:
            return Counter(name, text, LABELS, registry=registry)

        def histogram(name: str, text: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, text, LABELS, buckets=buckets, registry=registry)

        self.running = gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches."
        ).labels(**labels)
        self.waiting = gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed."
        ).labels(**labels)
        self.kv_usage = gauge(cache, "KV-cache usage. 1 means 100 percent usage.").labels(**labels)
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
        ).labels(**labels)
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        ).labels(**labels)
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        ).labels(**labels)
        self.prompt_tokens = counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed."
        ).labels(**labels)
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        ).labels(**labels)
        success = Counter(
            "vllm:request_success",
            "Count of successfully processed requests.",
            [*LABELS, "finished_reason"],
            registry=registry,
        )
        self.success = {
            reason: success.labels(**labels, finished_reason=reason) for reason in FINISH_REASONS
        }
        tokens = token_buckets(max_model_len)
        self.request_prompt = histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tokens
        ).labels(**labels)
        self.request_generation = histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", tokens
        ).labels(**labels)
        self.params_n = histogram(
            "vllm:request_params_n", "Histogram of the n request parameter.", PARAMS_N_BUCKETS
        ).labels(**labels)
        self.params_max_tokens = histogram(
            "vllm:request_params_max_tokens",
            "Histogram of the max_tokens request parameter.",
            tokens,
        ).labels(**labels)
        self.ttft = histogram(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        ).labels(**labels)
        self.inter_token = histogram(
            "vllm:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.",
            INTER_TOKEN_BUCKETS,
        ).labels(**labels)
        self.tpot = histogram(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            INTER_TOKEN_BUCKETS,
        ).labels(**labels)
        self.e2e = histogram(
            "vllm:e2e_request_latency_seconds",
            "Histogram of e2e request latency in seconds.",
            REQUEST_BUCKETS,
        ).labels(**labels)
        self.queue = histogram(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            REQUEST_BUCKETS,
        ).labels(**labels)
        self.inference = histogram(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            REQUEST_BUCKETS,
        ).labels(**labels)
        self.prefill = histogram(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            REQUEST_BUCKETS,
        ).labels(**labels)
        self.decode = histogram(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            REQUEST_BUCKETS,
        ).labels(**labels)
        self.request_preemptions = histogram(
            "vllm:request_num_preemptions",
            "Histogram of the number of times a request was preempted.",
            PREEMPTION_BUCKETS,
        ).labels(**labels)

    def finished(
        self,
        *,
        reason: str,
        prompt: int,
        generated: int,
        queue_s: float,
        ttft_s: float,
        e2e_s: float,
        n: int = 1,
        max_tokens: int | None = None,
    ) -> None:
        """Record one request that ran to its end (or was aborted after it started).

        Times are from arrival, as vLLM's are: `ttft_s` includes the queue, so prefill is
        `ttft_s - queue_s` and decode is the rest.
        """
        self.prompt_tokens.inc(prompt)
        self.prefix_queries.inc(prompt)
        self.generation_tokens.inc(generated)
        self.success.get(reason, self.success["abort"]).inc()
        self.request_prompt.observe(prompt)
        self.request_generation.observe(generated)
        self.params_n.observe(n)
        if max_tokens is not None:
            self.params_max_tokens.observe(max_tokens)
        self.request_preemptions.observe(0)
        prefill_s = max(0.0, ttft_s - queue_s)
        decode_s = max(0.0, e2e_s - ttft_s)
        self.queue.observe(queue_s)
        self.ttft.observe(ttft_s)
        self.e2e.observe(e2e_s)
        self.prefill.observe(prefill_s)
        self.decode.observe(decode_s)
        self.inference.observe(prefill_s + decode_s)
        if generated > 1:
            # vLLM observes every gap between tokens; the simulator decodes in even steps.
            per_token = decode_s / (generated - 1)
            self.tpot.observe(per_token)
            for _ in range(generated - 1):
                self.inter_token.observe(per_token)

    def finished_count(self, reason: str) -> float:
        """Requests that ended with `reason` so far."""
        value = self.registry.get_sample_value(
            "vllm:request_success_total",
            {**self.labels, "finished_reason": reason},
        )
        return value or 0.0

    def render(self, running: int, waiting: int, kv_usage: float) -> bytes:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv_usage.set(kv_usage)
        return generate_latest(self.registry)
