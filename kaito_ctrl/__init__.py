"""kaito-ctrl: the Kaito AI-workload operator and its AKS GPU node provisioner, in Python."""

__version__ = "0.1.0"
