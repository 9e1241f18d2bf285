"""garimpo: find illegal gold mining in the Amazon from Sentinel-2 imagery.

The package holds the logic; the rule scripts in ``scripts/`` are thin wrappers
that read ``snakemake.input/output/params`` and call one function from here.
"""

__version__ = "0.1.0"
