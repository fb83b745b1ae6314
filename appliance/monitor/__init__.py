"""Load signals: GPUs (NVML), the host, engine metrics and the appliance's own latency windows."""
