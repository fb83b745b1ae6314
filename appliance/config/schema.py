"""The shape of `models.toml`: frozen msgspec structs, unknown keys refused.

Each section belongs to one concern of the appliance; the loader in `load.py` turns the file plus the
service guide's environment variables into one resolved `Config`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

AGENTS: tuple[str, ...] = ("kai", "guardrail", "genetic", "wellness")
EngineKind = Literal["vllm", "sim", "external"]
Port = Annotated[int, Meta(ge=1, le=65535)]
Positive = Annotated[float, Meta(gt=0)]
NonNegative = Annotated[float, Meta(ge=0)]
Fraction = Annotated[float, Meta(gt=0, le=1)]
Probability = Annotated[float, Meta(ge=0, le=1)]


class Base(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Common options for every config section."""


class ServerConfig(Base, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    data_dir: str = "var"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Grace given to in-flight requests and engines on shutdown.
    shutdown_grace_s: Positive = 10.0
    # How often the operations page's history takes a sample (it keeps the last hour).
    history_interval_s: Annotated[float, Meta(ge=0.1, le=600)] = 30.0
    # On SIGTERM: seconds to stay up not-ready (/health/ready 503), still serving, so a load
    # balancer moves traffic away before the stop; 0 = stop at once.
    drain_s: NonNegative = 0.0
    # TCP port of the HAProxy agent-check answer (weight from load, drain, down); 0 = off.
    lb_agent_port: Annotated[int, Meta(ge=0, le=65535)] = 0


class LLMSettings(Base, frozen=True, kw_only=True):
    """Connection settings; names follow the service guide's LLM_* variables."""

    timeout: Positive = 30.0
    # A PEM bundle of CAs trusted for HTTPS engines besides the system's (gateway/tls.py).
    ca_file: str | None = None
    max_retries: Annotated[int, Meta(ge=0, le=10)] = 3
    retry_delay: NonNegative = 1.0
    circuit_breaker_threshold: Annotated[int, Meta(ge=1)] = 5
    circuit_breaker_timeout: Positive = 60.0


class SimSettings(Base, frozen=True, kw_only=True):
    """Knobs of the simulator engine: its latency model and its faults."""

    # Latency model. `None` means: derive from the model's size class (the guide's tokens/s).
    decode_tokens_per_s: Positive | None = None
    prefill_tokens_per_s: Positive | None = None
    # Each extra running sequence slows decode by this fraction (batching is not free).
    batch_slowdown: NonNegative = 0.02
    kv_cache_tokens: Annotated[int, Meta(ge=1)] | None = None
    # Multiplies every modelled delay; 0 = no delay at all (the gateway-overhead baseline).
    time_scale: NonNegative = 1.0
    seed: int = 0
    # Faults, for tests and drills.
    error_rate: Probability = 0.0
    stall_rate: Probability = 0.0
    stall_s: NonNegative = 30.0
    crash_after: Annotated[int, Meta(ge=1)] | None = None
    slow_start_s: NonNegative = 0.0
    malformed_rate: Probability = 0.0
    # Expose the KV-cache gauge under vLLM's pre-0.9 name, vllm:gpu_cache_usage_perc.
    legacy_metric_names: bool = False


class EngineConfig(Base, frozen=True, kw_only=True):
    """One model server: launched (`vllm`, `sim`) or reached (`external`)."""

    id: Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    kind: EngineKind
    # vllm: a hub id or a local directory; sim: a catalog name; external: the remote model name.
    model: str
    # The name clients use; defaults to `model`.
    served_name: str | None = None
    # Further names the same engine answers to (external servers hosting several models).
    aliases: tuple[str, ...] = ()
    port: Port | None = None
    base_url: str | None = None
    api_key: str | None = None
    gpus: tuple[int, ...] | None = None
    tensor_parallel_size: Annotated[int, Meta(ge=1)] = 1
    gpu_memory_utilization: Fraction | None = None
    max_model_len: Annotated[int, Meta(ge=256)] = 8192
    max_num_seqs: Annotated[int, Meta(ge=1)] = 64
    quantization: Literal["awq", "gptq", "fp8", "bitsandbytes"] | None = None
    dtype: Literal["auto", "float16", "bfloat16"] = "auto"
    enable_prefix_caching: bool = True
    extra_args: tuple[str, ...] = ()
    startup_timeout_s: Positive | None = None
    sim: SimSettings = SimSettings()
    # external: a PEM bundle of CAs that sign the server's certificate (besides system trust).
    ca_file: str | None = None

    @property
    def name(self) -> str:
        return self.served_name or self.model

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class ExpectedRow(Base, frozen=True, kw_only=True):
    """One row of the service guide's expected-performance table."""

    model_size: str
    p95_s: tuple[Positive, Positive]
    tokens_per_s: tuple[Positive, Positive]


class AgentConfig(Base, frozen=True, kw_only=True):
    """Settings shared by every profile: prompt, sampling, objective."""

    max_tokens: Annotated[int, Meta(ge=1)] = 512
    temperature: Annotated[float, Meta(ge=0, le=2)] = 0.7
    top_p: Annotated[float, Meta(gt=0, le=1)] = 1.0
    expected: ExpectedRow
    # Set by profiles and environment; kept here once resolved.
    model: str = ""
    fallbacks: tuple[str, ...] = ()


class AgentModels(Base, frozen=True, kw_only=True):
    model: str
    fallbacks: tuple[str, ...] = ()


class CatalogEntry(Base, frozen=True, kw_only=True):
    """What the placement planner and the simulator need to know of a model."""

    params_b: Positive
    size_class: str
    layers: Annotated[int, Meta(ge=1)]
    hidden_size: Annotated[int, Meta(ge=1)]
    kv_heads: Annotated[int, Meta(ge=1)]
    head_dim: Annotated[int, Meta(ge=1)]
    attention_heads: Annotated[int, Meta(ge=1)] | None = None
    vocab_size: Annotated[int, Meta(ge=1)] = 128256
    max_position_embeddings: Annotated[int, Meta(ge=1)] = 131072
    weight_dtype: Literal["float16", "bfloat16", "fp8", "int4"] = "bfloat16"


class ProfileConfig(Base, frozen=True, kw_only=True):
    description: str = ""
    # Declared hardware, for what-if planning: "2xA100-40GB", "1xH100-80GB", or "none".
    gpus: str = "none"
    # Kept to explain why it does not fit; never launched.
    example_only: bool = False
    default_model: str
    agents: dict[str, AgentModels]
    engines: tuple[EngineConfig, ...]


class SecurityConfig(Base, frozen=True, kw_only=True):
    """Who may call the appliance's own API."""

    # Keys as literal strings; prefer `api_keys_env`.
    api_keys: tuple[str, ...] = ()
    # Environment variable holding a comma-separated list of keys.
    api_keys_env: str = "APPLIANCE_API_KEYS"
    # Requests per second and burst, per key (0 = unlimited).
    rate_limit_rps: NonNegative = 0.0
    rate_limit_burst: Annotated[int, Meta(ge=1)] = 20


class AdmissionConfig(Base, frozen=True, kw_only=True):
    """Backpressure: how much each engine takes and how long work may wait."""

    enabled: bool = True
    # Concurrent requests per engine; `None` = the engine's max_num_seqs.
    max_concurrency: Annotated[int, Meta(ge=1)] | None = None
    queue_size: Annotated[int, Meta(ge=0)] = 64
    queue_timeout_s: Positive = 5.0
    # Saturation score at or above which an agent is routed to its fallback model.
    reroute_at: Fraction = 0.85
    # Saturation score at or above which the lowest classes are shed.
    shed_at: Fraction = 0.95
    # Metrics older than this count as unknown.
    metrics_max_age_s: Positive = 10.0
    # What unknown metrics mean: "admit" trusts the appliance's own counters alone;
    # "conservative" also assumes the engine half busy with work it cannot see.
    unknown_metrics: Literal["admit", "conservative"] = "conservative"
    retry_after_s: Annotated[int, Meta(ge=1)] = 2
    # Share of the slots of the guardrail's engines that only the guardrail may use.
    guardrail_reserve: Probability = 0.25
    # Monitors: engine /metrics scrapes, the score refresh, GPU and host readings.
    scrape_interval_s: Positive = 1.0
    refresh_interval_s: Positive = 0.25
    gpu_interval_s: Positive = 5.0
    # Latency windows (P50/P95/P99 per agent and model) and the samples the latency term needs.
    latency_window_s: Positive = 60.0
    latency_min_samples: Annotated[int, Meta(ge=1)] = 20


CrisisCategory = Literal["suicide", "self_harm", "harm_to_others", "abuse"]


class CrisisResource(Base, frozen=True, kw_only=True):
    """One place a person in crisis can turn to, as shown in crisis replies."""

    name: str
    # How to reach it, in words a person can act on: "Call or text 988".
    contact: str
    url: str | None = None
    hours: str = "24/7"
    # The crisis categories it serves; empty = every category.
    categories: tuple[CrisisCategory, ...] = ()


class SafetyConfig(Base, frozen=True, kw_only=True):
    """The crisis path and the guardrail policy."""

    # Chooses the crisis resources shown (shipped for en-US, en-CA, en-GB, en-IE, en-AU, en-NZ).
    locale: str = "en-US"
    # Per-locale resources that replace the shipped ones (or add a locale).
    resources: dict[str, tuple[CrisisResource, ...]] = {}
    # What happens to a non-crisis message when the guardrail model cannot answer.
    guardrail_unavailable: Literal["fail_closed", "fail_open"] = "fail_closed"
    # Also classify Kai's draft before releasing it.
    check_reply: bool = True
    max_message_chars: Annotated[int, Meta(ge=1)] = 8000
    max_history_turns: Annotated[int, Meta(ge=0)] = 50
    # Messages or check-ins one analysis request may carry.
    max_analysis_items: Annotated[int, Meta(ge=1)] = 200
    # Recent turns the guardrail sees with the message it classifies.
    guardrail_context_turns: Annotated[int, Meta(ge=0)] = 4
    # Deadlines per agent call, retries and fallback models included; past them the next
    # fallback step answers (for the guardrail: the policy above).
    guardrail_timeout_s: Positive = 5.0
    reply_timeout_s: Positive = 45.0
    analysis_timeout_s: Positive = 60.0
    cache_ttl_s: Positive = 600.0
    cache_size: Annotated[int, Meta(ge=1)] = 1024


class BenchConfig(Base, frozen=True, kw_only=True):
    """Scheduled benchmarks: when they run, how much load they make, what counts as a regression."""

    enabled: bool = True
    # Crontab expressions (minute hour day month weekday, Sunday = 0) in the host's time zone.
    nightly_cron: str = "0 3 * * *"  # a capacity sweep of every agent and the mix
    probe_cron: str = "*/15 * * * *"  # a few requests per agent at concurrency 1
    # Skip a scheduled run, and pause a running one, while live in-flight requests exceed this.
    busy_inflight: Annotated[int, Meta(ge=0)] = 8
    reports_dir: str = "reports"
    # The SQLite file, relative to server.data_dir unless absolute.
    db_file: str = "bench.sqlite3"
    # Requests per agent per load level (sweeps send at least 4 per concurrent slot).
    requests: Annotated[int, Meta(ge=1)] = 24
    probe_requests: Annotated[int, Meta(ge=1)] = 4
    # A sweep doubles concurrency from 1 up to this, or until an objective breaks.
    max_concurrency: Annotated[int, Meta(ge=1)] = 64
    # Share of failed requests beyond which a load level breaks the objectives.
    error_budget: Probability = 0.01
    # A sweep's knee: the load up to which P95 stays within this much above its unloaded value.
    degradation: Positive = 0.5
    # A run is flagged when its P95 is this much worse than the median of the last runs.
    regression_threshold: Positive = 0.15
    regression_window: Annotated[int, Meta(ge=1)] = 7
    seed: int = 0
    request_timeout_s: Positive = 120.0

    def __post_init__(self) -> None:
        for name in ("nightly_cron", "probe_cron"):
            if len(getattr(self, name).split()) != 5:
                raise ValueError(
                    f"{name}: a crontab expression of 5 fields (minute hour day month weekday)"
                )


class RawConfig(Base, frozen=True, kw_only=True):
    """`models.toml` as written."""

    server: ServerConfig = ServerConfig()
    llm: LLMSettings = LLMSettings()
    security: SecurityConfig = SecurityConfig()
    admission: AdmissionConfig = AdmissionConfig()
    safety: SafetyConfig = SafetyConfig()
    bench: BenchConfig = BenchConfig()
    profile: str = "sim"
    agents: dict[str, AgentConfig]
    catalog: dict[str, CatalogEntry] = {}
    profiles: dict[str, ProfileConfig]


class Config(Base, frozen=True, kw_only=True):
    """The resolved configuration the appliance runs with."""

    source: str
    profile: str
    server: ServerConfig
    llm: LLMSettings
    security: SecurityConfig
    admission: AdmissionConfig
    safety: SafetyConfig
    bench: BenchConfig
    default_model: str
    gpus: str
    agents: dict[str, AgentConfig]
    engines: tuple[EngineConfig, ...]
    catalog: dict[str, CatalogEntry]
    profiles: dict[str, ProfileConfig]

    def engine_for(self, model: str) -> EngineConfig | None:
        """The engine that serves `model` (a served name or alias), if any; the first replica."""
        for engine in self.engines:
            if model in engine.names:
                return engine
        return None

    def engines_for(self, model: str) -> tuple[EngineConfig, ...]:
        """Every engine that serves `model`: one, or several replicas."""
        return tuple(engine for engine in self.engines if model in engine.names)
