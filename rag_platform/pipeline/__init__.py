"""The refresh steps the Dagster assets call: each takes the run's ``RunParts``, holds the single warehouse
writer only while it runs, calls the domain, and records its counts in the run record."""
