"""Latency and reports (DESIGN.md "Measuring").

- `latency`: `time_session`, `compare` (every system in one interleaved run), `make_inputs`,
  `parse_input_shapes`, `format_compare`.
- `report`: `build_report`, `write_report` (report.json / .md / .html), `format_console`.

FLOPs saved are shown beside time saved, per node and in total.
"""
