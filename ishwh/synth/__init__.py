"""The embedded synthetic ISH atlas: realistic section images whose truth is known.

It is the default data of ``ishwh demo``, the data of most end-to-end tests and the
yardstick for feature extractors and trainers. See ``docs/synthetic.md``.
"""

from ishwh.synth.generate import Atlas, SynthExperiment, ingest_synthetic, write_manifest
from ishwh.synth.params import PRESETS, SynthParams, resolve

__all__ = ["PRESETS", "Atlas", "SynthExperiment", "SynthParams", "ingest_synthetic", "resolve",
           "write_manifest"]
