"""Input/output shared by the engines: strain and its data-quality checks, posterior files,
atomic writes, and locked output directories whose results are published as one set."""
