"""The simulator's resolved settings, shared by the CLI and the server."""

from __future__ import annotations

from msgspec import Struct

from appliance.simulator import latency


class SimOptions(Struct, frozen=True, kw_only=True):
    model: str
    served_model_names: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_num_seqs: int = 256
    max_model_len: int = 8192
    size_class: str = latency.DEFAULT_SIZE_CLASS
    decode_tokens_per_s: float | None = None
    prefill_tokens_per_s: float | None = None
    batch_slowdown: float = 0.02
    kv_cache_tokens: int | None = None
    time_scale: float = 1.0
    seed: int = 0
    error_rate: float = 0.0
    stall_rate: float = 0.0
    stall_s: float = 30.0
    crash_after: int | None = None
    slow_start_s: float = 0.0
    malformed_rate: float = 0.0
    legacy_metric_names: bool = False

    @property
    def kv_budget(self) -> int:
        return self.kv_cache_tokens or latency.default_kv_cache_tokens(
            self.max_model_len, self.max_num_seqs
        )

    def profile(self) -> latency.LatencyProfile:
        return latency.profile_for(
            self.size_class,
            decode_tokens_per_s=self.decode_tokens_per_s,
            prefill_tokens_per_s=self.prefill_tokens_per_s,
            batch_slowdown=self.batch_slowdown,
            time_scale=self.time_scale,
        )
