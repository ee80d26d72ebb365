"""The comparison report: finished runs read into rows, tables (markdown, CSV, JSON), HTML pages and plots."""
