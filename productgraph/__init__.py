"""ProductGraph: the `productgraph` command, shared settings and the embedded local stack."""

__version__ = "0.1.0"
