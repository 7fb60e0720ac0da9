"""The Dagster layer: thin wiring of the domain steps into assets, checks, sensors and jobs."""
