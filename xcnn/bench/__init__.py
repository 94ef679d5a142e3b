"""The benchmark (``python -m xcnn.bench``): ``runners`` (xcnn and its PyTorch twin, interleaved
timing), ``profile`` (per-op times from the dispatcher's hook), ``memory`` (peak RSS), ``worker``
(the measuring child process and the driver), ``markdown`` (the report)."""
