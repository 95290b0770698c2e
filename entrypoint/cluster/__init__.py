"""Past one Spark: the Ray cluster plan (pure), the network facts, the Ray side."""
