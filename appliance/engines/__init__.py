"""Engines: the model servers the appliance launches (`vllm`, `sim`) or reaches (`external`).

`registry.build_engines` turns the config into endpoints and launch specs; `supervisor.Supervisor`
runs the launch specs. Nothing is imported here, so importing a submodule stays cheap.
"""
