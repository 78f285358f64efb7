"""Reader studies: the web application that runs the paper's dermatologist comparison (Fig. 11).

Readers see one case at a time, one stage at a time (default: the clinical photo, then with the
metadata, then with the dermoscopy image too), each answer final before the next stage shows more;
answers go into a database (SQLite by default, any SQLAlchemy URL) as they are given; the export is
the reader CSV that ``remixformer analyze readers`` reads. docs/readers.md describes it.

- :mod:`~remixformer.study.db`: tables, engine, transactions, the schema version;
- :mod:`~remixformer.study.cases`: cases from a manifest (through the data layer), stages;
- :mod:`~remixformer.study.study`: :class:`Study`, the rules (accounts, reading order, answers);
- :mod:`~remixformer.study.export`: the reader CSV and the details CSV;
- :mod:`~remixformer.study.compare`: the admin's comparison with the model (Fig. 11);
- :mod:`~remixformer.study.app`: :func:`create_app`, the FastAPI application and its pages.

The package is named ``study`` (not ``readers``) because it runs a study, as ``serving`` serves a
model; ``remixformer.explain.readers`` analyses a study's answers, and keeps the word for that.
"""

from remixformer.study.cases import DEFAULT_STAGES, cases_from_manifest, parse_stages
from remixformer.study.db import SCHEMA_VERSION, StudyDatabase, StudyDatabaseError
from remixformer.study.study import Study, StudyError

__all__ = [
    "DEFAULT_STAGES",
    "SCHEMA_VERSION",
    "Study",
    "StudyDatabase",
    "StudyDatabaseError",
    "StudyError",
    "cases_from_manifest",
    "parse_stages",
]
