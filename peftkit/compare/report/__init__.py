"""Reports from finished run dirs: tables (mean ± std, 95% t-intervals), pages (markdown, HTML) and plots."""
