"""ANPR data, one module per noun (the package re-exports nothing: import from the module).

- ``models``: the tables ``anpr_reads``, ``anpr_hotlists``, ``anpr_hotlist_entries``, ``anpr_hits``;
- ``vrm``: registrations and search patterns, normalised;
- ``images``: a read's plate patch and overview JPEG files under the ANPR image root;
- ``reads``: storing a read, searching reads (with narrowing), the raw reads of journeys;
- ``hotlists``: hotlists and their entries;
- ``hits``: reads that matched an entry, and the operator's decision;
- ``retention``: deleting old reads, their hits and pictures.
"""
