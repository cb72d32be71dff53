"""The Allen Developing Mouse Brain Atlas (api.brain-map.org) as an ishwh source.

- :mod:`ishwh.allen.queries`: URLs and RMA statements for the documented endpoints.
- :mod:`ishwh.allen.client`: an httpx client with retries, paging, a polite concurrency
  limit and an on-disk cache (which also makes offline ingestion possible).
- :mod:`ishwh.allen.readers`: parsers for the real formats (ontology JSON, grid ``.mhd/.raw``
  zips, grid annotation volumes, ``data_set.xml``).
- :mod:`ishwh.allen.ingest`: ontology -> genes/experiments -> sections/images -> annotations
  -> grids, into the contract tables.
"""

from ishwh.allen.client import AllenClient
from ishwh.allen.ingest import ingest_allen

__all__ = ["AllenClient", "ingest_allen"]
