"""Reports: the weekly tasking pack and the statistics table (docs/design/reports.md)."""
