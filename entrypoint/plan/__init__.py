"""The pure decision pipeline: profile + hardware + checkpoint → plan → argv.

Nothing here touches the network, the GPU or the engine; every input arrives
as an argument (parsed JSON, mappings, dataclasses), so each step is unit-tested.
"""
