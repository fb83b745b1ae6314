"""A vLLM-compatible simulator engine: `python -m appliance.simulator MODEL [flags]`.

It speaks vLLM's OpenAI-compatible HTTP surface with synthetic answers and modelled latency, so the
gateway, agents, load control and benchmarks above it run for real on machines with no GPU. The
package imports nothing at import time; `cli.main` builds the server.
"""
