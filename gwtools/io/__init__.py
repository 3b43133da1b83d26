"""Input/output shared by the engines: strain, posterior files, results, atomic writes."""
