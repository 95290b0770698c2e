"""``spark-serve bench``: the model cards' benchmark tables, measured the same way
for every profile, with power, tokens per watt and the distance to the planner's
decode ceiling.

llama-benchy drives the load; :mod:`.sampler` reads the sidecar's ``/metrics``
meanwhile; :mod:`.report` (pure) joins both into rows; :mod:`.output` writes the
Markdown table, the JSON and the plot.

``opticks.txt`` is the prompt text handed to llama-benchy: the opening of Isaac
Newton's *Opticks* (4th edition, 1730), in the public domain, so a run needs no
network (an air-gapped Spark, the tests).
"""
