"""Kai LLM appliance: engines, agents, load control and benchmarks behind one API."""

__version__ = "0.1.0"
