"""The governance pack's reporting: reporting checklists (TRIPOD+AI, CLAIM, DECIDE-AI) filled from
live evidence, and the data of a model's dossier.

- ``evidence``: what the project knows about one model (its card, the store's facts, validation runs
  saved beside the store, code versions), gathered into one plain ``Evidence``;
- ``items``: the checklists' items (short paraphrases with their numbers, as data);
- ``answers``: one function per item that answers it from the evidence, or finds it missing;
- ``checklist``: the filled checklist of a model (answered / missing, source named), its JSON and CSV;
- ``dossier``: the sections of a model dossier as plain data (the PDF is drawn by
  ``dashboard.services``).

Takes plain values (card dicts, a DuckDB connection); imports ``analytics.store`` and
``analytics.governance.quality`` only, never ``models`` (callers load the cards).
"""
