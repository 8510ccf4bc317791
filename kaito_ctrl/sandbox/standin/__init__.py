"""The sandbox's stand-in for a preset's inference server: one local aiohttp process per inference pod on a kwok
node, answering the HTTP API the pod's image would serve (no GPU, no weights), reached through kwok's
port-forward and logged where ``kubectl logs`` reads."""
