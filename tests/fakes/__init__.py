"""Test doubles (fake NVML / torch CUDA views)."""
